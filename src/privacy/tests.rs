//! Hashing vectors, masking that holds for any input, and PII newtypes that only hold
//! valid values and never print them.

use proptest::prelude::*;
use secrecy::SecretString;

use super::*;

#[test]
fn an_unkeyed_hash_is_the_lower_case_hex_sha256() {
    let hash = SessionHasher::new(None).hash("abc");
    assert_eq!(
        hash,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_keyed_hash_is_hmac_sha256() {
    // RFC 4231, test case 2.
    let hasher = SessionHasher::new(Some(SecretString::from("Jefe")));
    assert!(hasher.is_keyed());
    assert_eq!(
        hasher.hash("what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn an_empty_key_means_no_key() {
    let hasher = SessionHasher::new(Some(SecretString::from("")));
    assert!(!hasher.is_keyed());
    assert_eq!(hasher.hash("abc"), SessionHasher::new(None).hash("abc"));
}

#[test]
fn debug_of_the_hasher_never_shows_the_key_and_clones_hash_alike() {
    let hasher = SessionHasher::new(Some(SecretString::from("top-secret-key")));
    let shown = format!("{hasher:?}");
    assert!(!shown.contains("top-secret-key"), "{shown}");
    assert!(shown.contains("hmac-sha256"));
    assert_eq!(hasher.clone().hash("s-1"), hasher.hash("s-1"));
}

#[test]
fn emails_are_masked_to_their_first_letter_and_domain() {
    let cases = [
        ("jane@example.com", "j***@example.com"),
        ("@example.com", "***@example.com"),
        ("no-at-sign", "***"),
        ("", "***"),
        ("é@x.io", "é***@x.io"),
        ("a\"b@c@example.com", "a***@example.com"),
    ];
    for (input, masked) in cases {
        assert_eq!(mask_email(input), masked, "{input}");
    }
}

#[test]
fn phones_are_masked_to_the_plus_first_digit_and_last_four() {
    let cases = [
        ("+15551234567", "+1******4567"),
        ("+44 20 7946 0958", "+4*******0958"),
        ("5551234567", "******4567"),
        ("+123", "+**3"),
        ("12", "*2"),
        ("", ""),
        ("call me", ""),
    ];
    for (input, masked) in cases {
        assert_eq!(mask_phone(input), masked, "{input}");
    }
}

#[test]
fn names_are_masked_to_their_first_letter() {
    assert_eq!(mask_name("Jane"), "J***");
    assert_eq!(mask_name("  "), "");
}

#[test]
fn emails_are_validated_and_lower_cased() {
    assert_eq!(
        Email::parse(" Jane.Doe@Example.COM ").unwrap().as_str(),
        "jane.doe@example.com"
    );
    for bad in [
        "jane",
        "jane@",
        "@example.com",
        "Jane <jane@example.com>",
        "jane@localhost",
        "a b@c.io",
    ] {
        assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad}");
    }
}

#[test]
fn phones_are_normalised_to_e164() {
    let phone = Phone::parse("+1 (415) 555-2671", None).unwrap();
    assert_eq!(phone.as_str(), "+14155552671");
    assert_eq!(phone.region(), Some(phonenumber::country::Id::US));
    let national = Phone::parse("020 7946 0958", Some(phonenumber::country::Id::GB)).unwrap();
    assert_eq!(national.as_str(), "+442079460958");
}

#[test]
fn fictional_numbers_of_a_possible_length_are_accepted() {
    // The documented examples use the fictional 555 range, which libphonenumber calls invalid.
    for (input, e164) in [
        ("+15551234567", "+15551234567"),
        ("+1 555-555-0100", "+15555550100"),
    ] {
        assert_eq!(Phone::parse(input, None).unwrap().as_str(), e164);
    }
    let fictional = Phone::parse("+15551234567", None).unwrap();
    assert_eq!(fictional.region(), Some(phonenumber::country::Id::US));
}

#[test]
fn a_phone_without_country_code_or_region_is_rejected() {
    assert_eq!(
        Phone::parse("4155552671", None),
        Err(InvalidPhone::NoCountryCode)
    );
}

#[test]
fn an_impossible_phone_is_rejected() {
    for bad in [
        "+1",
        "+999 123",
        "+1 415 555 26711234",
        "+not a number",
        "+44 12",
        &"9".repeat(80),
    ] {
        assert_eq!(Phone::parse(bad, None), Err(InvalidPhone::Invalid), "{bad}");
    }
}

#[test]
fn debug_of_email_and_phone_is_masked() {
    let email = Email::parse("jane@example.com").unwrap();
    let phone = Phone::parse("+14155552671", None).unwrap();
    assert_eq!(format!("{email:?}"), r#"Email("j***@example.com")"#);
    assert_eq!(format!("{phone:?}"), r#"Phone("+1******2671")"#);
}

#[test]
fn email_and_phone_serialize_as_plain_strings_and_revalidate_when_read() {
    let email = Email::parse("jane@example.com").unwrap();
    assert_eq!(
        serde_json::to_string(&email).unwrap(),
        r#""jane@example.com""#
    );
    let read: Email = serde_json::from_str(r#""JANE@example.com""#).unwrap();
    assert_eq!(read, email);
    assert!(serde_json::from_str::<Email>(r#""not-an-email""#).is_err());

    let phone = Phone::parse("+14155552671", None).unwrap();
    assert_eq!(serde_json::to_string(&phone).unwrap(), r#""+14155552671""#);
    assert_eq!(
        serde_json::from_str::<Phone>(r#""+1 415 555 2671""#).unwrap(),
        phone
    );
    assert!(serde_json::from_str::<Phone>(r#""4155552671""#).is_err());
}

proptest! {
    #![proptest_config(crate::submission::tests::proptest_config())]

    #[test]
    fn masking_accepts_any_input_and_never_shows_more_than_five_digits(input in ".{0,40}") {
        let email = mask_email(&input);
        let phone = mask_phone(&input);
        prop_assert!(phone.chars().filter(char::is_ascii_digit).count() <= 5);
        prop_assert!(email.contains("***"));
    }

    #[test]
    fn phone_parsing_never_panics(input in "[0-9+() .x#:-]{0,30}") {
        let _ = Phone::parse(&input, Some(phonenumber::country::Id::US));
        let _ = Phone::parse(&input, None);
    }
}

#[test]
fn emails_and_phones_in_free_text_are_masked_and_the_rest_kept() {
    let cases = [
        (
            "Contact jane.doe@example.com already exists.",
            "Contact j***@example.com already exists.",
        ),
        ("call +1 555 123 4567 now", "call +1******4567 now"),
        (
            "Refused 'jane@example.com' and o'brien@example.com",
            "Refused 'j***@example.com' and o***@example.com",
        ),
        ("(555) 123-4567", "(******4567"),
        ("alt 5551234567, ok", "alt ******4567, ok"),
        (
            "conversation 0f8fad5b-d9cb-469f-a165-70867728950e at 2026-11-22T10:00:00Z",
            "conversation 0f8fad5b-d9cb-469f-a165-70867728950e at 2026-11-22T10:00:00Z",
        ),
        (
            "id 5e1d0c01-7a3b-4c2d-9e10-000000000005 and ref-5551234567",
            "id 5e1d0c01-7a3b-4c2d-9e10-000000000005 and ref-5551234567",
        ),
        ("status 400, code 12345", "status 400, code 12345"),
        ("user@localhost and @mention", "user@localhost and @mention"),
        ("", ""),
    ];
    for (raw, masked) in cases {
        assert_eq!(mask_text(raw), masked, "{raw}");
        assert_eq!(mask_text(masked), masked, "masking again: {masked}");
    }
}

proptest! {
    #![proptest_config(crate::submission::tests::proptest_config())]
    #[test]
    fn masked_text_never_holds_the_email_or_phone_it_was_given(
        before in "[ a-z,:(]{0,12}",
        local in "[a-z][a-z0-9._]{0,10}",
        domain in "[a-z]{1,10}\\.(com|org|co\\.uk)",
        digits in "[0-9]{10}",
        after in "[ a-z,.)]{0,12}",
    ) {
        let email = format!("{local}@{domain}");
        let text = format!("{before} {email} or +1{digits}{after}");
        let masked = mask_text(&text);
        prop_assert!(!masked.contains(&email), "{}", masked);
        prop_assert!(!masked.contains(&digits), "{}", masked);
    }
}
