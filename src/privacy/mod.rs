//! Personal data handling in one place.
//!
//! Guests' emails, phones and browser session ids pass through every stage of the service, and
//! each stage logs. To keep PII out of logs and off the wire by construction rather than by
//! care, this module owns the types that hold it: [`Email`] and [`Phone`] only exist in a
//! validated, normalised form and print themselves masked under `{:?}`; raw session ids are
//! turned into a one-way [`SessionHasher::hash`] before anything is published.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Longest phone input handed to the parser; real numbers, even formatted with an extension,
/// are far shorter, and the cap bounds the parser's work on hostile input.
const MAX_PHONE_INPUT_CHARS: usize = 64;

/// Turns raw browser session ids into stable, one-way identifiers.
///
/// Without a key this is the hex SHA-256 of the id; with `privacy.session_hash_key` set it is
/// HMAC-SHA256, so that a leaked hash cannot be confirmed by hashing guessed ids.
#[derive(Clone)]
pub struct SessionHasher {
    key: Option<SecretString>,
}

impl SessionHasher {
    /// A hasher using HMAC-SHA256 with `key`, or plain SHA-256 when `key` is `None` or empty
    /// (an empty key usually means "not configured", and would only give a false sense of
    /// keyed hashing).
    pub fn new(key: Option<SecretString>) -> Self {
        let key = key.filter(|k| !k.expose_secret().is_empty());
        Self { key }
    }

    /// Whether hashes are keyed (HMAC) rather than plain SHA-256.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The lower-case hex digest (64 characters) of `raw_session_id`.
    pub fn hash(&self, raw_session_id: &str) -> String {
        match &self.key {
            Some(key) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                    .expect("HMAC-SHA256 accepts keys of any length");
                mac.update(raw_session_id.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            None => hex::encode(Sha256::digest(raw_session_id.as_bytes())),
        }
    }
}

impl fmt::Debug for SessionHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.is_keyed() {
            "hmac-sha256"
        } else {
            "sha256"
        };
        f.debug_struct("SessionHasher")
            .field("mode", &mode)
            .finish()
    }
}

/// Masks an email for logs: the first character of the local part, `***`, and the domain
/// (`jane@example.com` → `j***@example.com`). Any input gives an answer; without an `@` the
/// whole value is masked.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Masks a phone number for logs, keeping the leading `+`, the first digit after it (the start
/// of the country code) and the last 4 digits (`+15551234567` → `+1******4567`). Short
/// inputs reveal less (at most half their digits), and characters other than digits and the
/// leading `+` are dropped. Any input gives an answer.
pub fn mask_phone(phone: &str) -> String {
    let trimmed = phone.trim_start();
    let international = trimmed.starts_with('+');
    let digits: Vec<char> = trimmed.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    let keep_last = 4.min(n / 2);
    let keep_first = usize::from(international && n >= 8);
    let mut out = String::with_capacity(n + 1);
    if international {
        out.push('+');
    }
    for (i, d) in digits.iter().enumerate() {
        let shown = i < keep_first || i >= n - keep_last;
        out.push(if shown { *d } else { '*' });
    }
    out
}

/// Masks every email address and phone number found in free text — another system's error
/// message, say — with [`mask_email`] and [`mask_phone`], keeping the rest. A phone is a run
/// of 7 to 15 digits (with an optional leading `+` and the separators ` -.()`) that is not
/// part of a longer word or hyphenated name (unless it starts with `+`), so ids, UUIDs and
/// timestamps pass; a long plain number is masked too, which errs on the safe side. Masking
/// masked text changes nothing.
pub fn mask_text(text: &str) -> String {
    mask_phones_in(&mask_emails_in(text))
}

fn is_email_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-'".contains(c)
}

fn is_email_domain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

fn mask_emails_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > copied && is_email_local(chars[start - 1]) {
                start -= 1;
            }
            // A quote before the address quotes it (`'jane@…'`); `o'brien@…` keeps its own.
            while start < i && chars[start] == '\'' {
                start += 1;
            }
            let mut end = i + 1;
            while end < chars.len() && is_email_domain(chars[end]) {
                end += 1;
            }
            // A full stop or a dash after the address belongs to the sentence.
            while end > i + 1 && matches!(chars[end - 1], '.' | '-') {
                end -= 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            if start < i && !domain.starts_with('.') && domain.contains('.') {
                out.extend(&chars[copied..start]);
                let local: String = chars[start..i].iter().collect();
                out.push_str(&mask_email(&format!("{local}@{domain}")));
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.extend(&chars[copied..]);
    out
}

/// Part of a word: a phone-like run touching one is an id, not a phone.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '*'
}

fn mask_phones_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let digit_at = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // Not inside a word, nor a group of a hyphenated or dotted one (a UUID's last
        // group may be all digits).
        let inside = i > 0
            && (is_word(chars[i - 1])
                || (matches!(chars[i - 1], '-' | '.') && i > 1 && is_word(chars[i - 2])));
        let starts = (c.is_ascii_digit() || (c == '+' && digit_at(i + 1))) && !inside;
        if !starts {
            out.push(c);
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < chars.len() && (chars[end].is_ascii_digit() || " -.()".contains(chars[end])) {
            end += 1;
        }
        while !chars[end - 1].is_ascii_digit() {
            end -= 1;
        }
        let digits = chars[i..end].iter().filter(|c| c.is_ascii_digit()).count();
        let run: String = chars[i..end].iter().collect();
        // A leading `+` marks a phone whatever follows it.
        let bounded = c == '+' || chars.get(end).is_none_or(|c| !is_word(*c));
        if (7..=15).contains(&digits) && bounded {
            out.push_str(&mask_phone(&run));
        } else {
            out.push_str(&run);
        }
        i = end;
    }
    out
}

/// Masks a person's name for logs: its first character and `***` (`Jane` → `J***`).
pub fn mask_name(name: &str) -> String {
    match name.trim().chars().next() {
        Some(first) => format!("{first}***"),
        None => String::new(),
    }
}

/// Why a value is not an acceptable email address. The message never repeats the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a valid email address (expected something like name@example.com)")]
pub struct InvalidEmail;

/// Why a value is not an acceptable phone number. The message never repeats the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhone {
    /// No country code in the value and no default region to assume one.
    #[error("has no country code; send it in international format, such as +15551234567")]
    NoCountryCode,
    /// Not a phone number at all, or not one that exists in its numbering plan.
    #[error("is not a valid phone number; send it in international format, such as +15551234567")]
    Invalid,
}

/// A syntactically valid email address, lower-cased.
///
/// `{:?}` prints it masked; use [`Email::as_str`] where the real value is needed. There is
/// deliberately no `Display`, so it cannot slip into a log line through `{}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Validates `raw` (trimmed; no display name such as `Jane <jane@…>`, no IP literal
    /// domain, a dotted domain) and lower-cases it.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let lowered = raw.trim().to_lowercase();
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        email_address::EmailAddress::parse_with_options(&lowered, options)
            .map(|_| Self(lowered))
            .map_err(|_| InvalidEmail)
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&mask_email(&self.0)).finish()
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Email::parse(&raw).map_err(|e| serde::de::Error::custom(format!("email {e}")))
    }
}

/// A valid phone number in E.164 form (`+15551234567`).
///
/// `{:?}` prints it masked; use [`Phone::as_str`] where the real value is needed. There is
/// deliberately no `Display`, so it cannot slip into a log line through `{}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Parses `raw` with the `phonenumber` crate, assuming `default_region` when the number has
    /// no leading `+`, and keeps it only if it is a possible number (known country code, a
    /// length its plan allows), in E.164 form. An extension, which E.164 cannot carry, is
    /// dropped.
    pub fn parse(
        raw: &str,
        default_region: Option<phonenumber::country::Id>,
    ) -> Result<Self, InvalidPhone> {
        let raw = raw.trim();
        if raw.chars().count() > MAX_PHONE_INPUT_CHARS {
            return Err(InvalidPhone::Invalid);
        }
        if !raw.starts_with('+') && default_region.is_none() {
            return Err(InvalidPhone::NoCountryCode);
        }
        // The crate has panicked on malformed input before (rust-phonenumber issues #32 and
        // #43); a guest's typo must be a validation error, never a crashed worker.
        let parsed = std::panic::catch_unwind(|| {
            let number = phonenumber::parse(default_region, raw).ok()?;
            is_possible(&number).then(|| number.format().mode(phonenumber::Mode::E164).to_string())
        });
        match parsed {
            Ok(Some(e164)) => Ok(Self(e164)),
            _ => Err(InvalidPhone::Invalid),
        }
    }

    /// The E.164 form, `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The region the number belongs to; for a number outside every assigned range, the main
    /// region of its country code (`+1` → US).
    pub fn region(&self) -> Option<phonenumber::country::Id> {
        use phonenumber::metadata::DATABASE;
        let number = phonenumber::parse(None, &self.0).ok()?;
        number.country().id().or_else(|| {
            let regions = DATABASE.by_code(&number.code().value())?;
            let main = regions.iter().find(|m| m.is_main_country_for_code());
            main.or(regions.first())?.id().parse().ok()
        })
    }
}

/// Whether the number has a known country code and a length its numbering plan allows.
///
/// This is libphonenumber's "possible number" test rather than its stricter `is_valid`, which
/// also checks assigned ranges: that one rejects fictional numbers such as `+15551234567`, the
/// very examples the web tier is documented with, and would turn a stale range table into lost
/// submissions.
fn is_possible(number: &phonenumber::PhoneNumber) -> bool {
    use phonenumber::metadata::DATABASE;
    let code = number.code().value();
    let metadata = number
        .metadata(&DATABASE)
        .or_else(|| DATABASE.by_code(&code)?.into_iter().next());
    let Some(metadata) = metadata else {
        return false;
    };
    let national = number.national();
    let digits = national.value().to_string().len() + usize::from(national.zeros());
    let Ok(digits) = u16::try_from(digits) else {
        return false;
    };
    // The crate's metadata leaves the general lengths empty, so they are the union over the
    // number types, as libphonenumber derives them (short codes and emergency numbers aside).
    let d = metadata.descriptors();
    [
        Some(d.general()),
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
    .any(|descriptor| descriptor.possible_length().contains(&digits))
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Phone").field(&mask_phone(&self.0)).finish()
    }
}

impl Serialize for Phone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Phone::parse(&raw, None).map_err(|e| serde::de::Error::custom(format!("phone {e}")))
    }
}

#[cfg(test)]
mod tests;
