//! Finding a guest's phone number in a CRM that stores numbers as people typed them.
//!
//! The guest's number is E.164 (`+15551234567`); a CRM may hold `(555) 123-4567`,
//! `+1 555-123-4567` or `5551234567`. Neither SOQL nor OData can normalise a column in a
//! filter, so the search asks for the usual spellings of the number at once (E.164, the
//! international and national formats, those with `-`, `.` or spaces between the groups,
//! the bare digits with and without the country code), and every record returned is then
//! compared in E.164, its number read in `crm.default_phone_region` (or the guest number's
//! region). A CRM whose numbers follow no such spelling can keep a digits-only field (a
//! formula field) and name it `crm.fields.phone_search`: the bare digits are among the
//! spellings.

use phonenumber::Mode;

use crate::privacy::Phone;

/// At most this many spellings go into one query.
const MAX_SPELLINGS: usize = 12;

/// The spellings of `phone` a CRM may hold, E.164 first, each once.
pub fn spellings(phone: &Phone) -> Vec<String> {
    let mut out: Vec<String> = vec![phone.as_str().to_owned()];
    let mut push = |s: String| {
        if !s.is_empty() && !out.contains(&s) && out.len() < MAX_SPELLINGS {
            out.push(s);
        }
    };
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(None, phone.as_str()).ok())
        .ok()
        .flatten();
    if let Some(number) = parsed {
        let international = number.format().mode(Mode::International).to_string();
        let national = number.format().mode(Mode::National).to_string();
        let code = number.code().value().to_string();
        push(international.clone());
        push(national.clone());
        let groups: Vec<&str> = national
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .collect();
        for separator in ["-", " ", "."] {
            push(groups.join(separator));
            push(format!("+{code} {}", groups.join(separator)));
        }
        let national_digits: String = groups.concat();
        push(national_digits.clone());
        push(format!("{code}{national_digits}"));
    }
    out
}

/// Whether the CRM's `crm` spelling is the guest's number: read in `region` (or the guest
/// number's region), compared in E.164.
pub fn same_number(guest: &Phone, crm: &str, region: Option<phonenumber::country::Id>) -> bool {
    let region = region.or_else(|| guest.region());
    Phone::parse(crm, region).is_ok_and(|crm| crm == *guest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> Phone {
        Phone::parse(s, None).unwrap()
    }

    #[test]
    fn spellings_cover_the_usual_formats() {
        let s = spellings(&phone("+15551234567"));
        for want in [
            "+15551234567",
            "+1 555-123-4567",
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "5551234567",
            "15551234567",
        ] {
            assert!(s.iter().any(|x| x == want), "{want} missing from {s:?}");
        }
        assert!(s.len() <= MAX_SPELLINGS);
        let uk = spellings(&phone("+442079460958"));
        assert!(uk.iter().any(|x| x == "020 7946 0958"), "{uk:?}");
    }

    #[test]
    fn numbers_are_compared_in_e164_in_the_region() {
        let guest = phone("+442079460958");
        assert!(same_number(&guest, "020 7946 0958", None));
        assert!(same_number(&guest, "+44 20 7946 0958", None));
        assert!(!same_number(&guest, "020 7946 0959", None));
        // Read in the US, the same digits are another number.
        let us: phonenumber::country::Id = "US".parse().unwrap();
        assert!(!same_number(&guest, "020 7946 0958", Some(us)));
    }
}
