//! The field mapping (`crm.fields.*`): which CRM field holds which customer attribute, with
//! defaults per kind, and the reading of one CRM record into a [`Customer`].

use serde_json::{Map, Value};

use super::client::CrmError;
use super::model::Customer;
use super::phone::same_number;
use crate::config::{CrmFieldSettings, CrmKind};
use crate::privacy::Phone;

/// The attributes, by their names in [`Customer`]'s JSON and in `crm.fields`.
const ATTRIBUTES: [(&str, &str); 9] = [
    ("id", "crm.fields.id"),
    ("firstName", "crm.fields.first_name"),
    ("lastName", "crm.fields.last_name"),
    ("email", "crm.fields.email"),
    ("phone", "crm.fields.phone"),
    ("loyaltyTier", "crm.fields.loyalty_tier"),
    ("accountStatus", "crm.fields.account_status"),
    ("loyaltyPoints", "crm.fields.loyalty_points"),
    ("previousTickets", "crm.fields.previous_tickets"),
];

/// Resolved field names; `None` = not mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMap {
    /// CRM field per attribute, in [`ATTRIBUTES`] order.
    fields: [Option<String>; 9],
    /// The session hash field; `None` = the session lookup is skipped.
    pub session_hash: Option<String>,
    /// The field the phone search filters on.
    pub phone_search: Option<String>,
}

/// The defaults of a kind (Salesforce: a Contact with custom fields; Dataverse: a contact
/// with columns of the default publisher prefix `new_`).
fn defaults(kind: CrmKind) -> ([&'static str; 9], Option<&'static str>) {
    match kind {
        CrmKind::Rest => (
            [
                "id",
                "firstName",
                "lastName",
                "email",
                "phone",
                "loyaltyTier",
                "accountStatus",
                "loyaltyPoints",
                "previousTickets",
            ],
            Some("sessionHash"),
        ),
        CrmKind::Salesforce => (
            [
                "Id",
                "FirstName",
                "LastName",
                "Email",
                "Phone",
                "Loyalty_Tier__c",
                "Account_Status__c",
                "Loyalty_Points__c",
                "Previous_Tickets__c",
            ],
            None,
        ),
        CrmKind::Dynamics => (
            [
                "contactid",
                "firstname",
                "lastname",
                "emailaddress1",
                "telephone1",
                "new_loyaltytier",
                "new_accountstatus",
                "new_loyaltypoints",
                "new_previoustickets",
            ],
            None,
        ),
    }
}

fn resolve(configured: Option<&str>, default: Option<&str>) -> Option<String> {
    match configured {
        Some("") => None,
        Some(name) => Some(name.to_owned()),
        None => default.map(str::to_owned),
    }
}

impl FieldMap {
    /// The mapping of `kind` with the configured overrides.
    pub fn new(kind: CrmKind, settings: &CrmFieldSettings) -> Self {
        let (names, session) = defaults(kind);
        let configured = settings.entries();
        let fields = std::array::from_fn(|i| resolve(configured[i].1, Some(names[i])));
        let phone_search =
            resolve(settings.phone_search.as_deref(), None).or_else(|| fields[4].clone());
        Self {
            session_hash: resolve(settings.session_hash.as_deref(), session),
            phone_search,
            fields,
        }
    }

    /// The id field.
    pub fn id(&self) -> &str {
        self.fields[0].as_deref().unwrap_or("id")
    }

    /// The email field, if mapped.
    pub fn email(&self) -> Option<&str> {
        self.fields[3].as_deref()
    }

    /// The phone field, if mapped.
    pub fn phone(&self) -> Option<&str> {
        self.fields[4].as_deref()
    }

    /// Every mapped field once, id first: what a query selects, nothing more.
    pub fn columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = Vec::new();
        let all = self
            .fields
            .iter()
            .flatten()
            .chain(&self.session_hash)
            .chain(&self.phone_search);
        for name in all {
            if !columns.contains(&name.as_str()) {
                columns.push(name);
            }
        }
        columns
    }

    /// The mapped fields with their configuration keys (for `topology check`'s messages).
    pub fn keyed(&self) -> Vec<(&'static str, &str)> {
        let mut keyed: Vec<(&'static str, &str)> = ATTRIBUTES
            .iter()
            .zip(&self.fields)
            .filter_map(|((_, key), field)| Some((*key, field.as_deref()?)))
            .collect();
        if let Some(field) = &self.session_hash {
            keyed.push(("crm.fields.session_hash", field));
        }
        if let Some(field) = &self.phone_search {
            keyed.push(("crm.fields.phone_search", field));
        }
        keyed
    }

    /// The customer of the first record whose phone field (or the `search` field the phone
    /// search ran on) holds the guest's number in any local spelling; the search finds
    /// candidates, this picks the one that really is that number.
    pub fn customer_with_phone(
        &self,
        records: &[Map<String, Value>],
        search: &str,
        phone: &Phone,
        region: Option<phonenumber::country::Id>,
    ) -> Result<Option<Customer>, CrmError> {
        let matching = records.iter().find(|record| {
            [self.phone(), Some(search)]
                .into_iter()
                .flatten()
                .filter_map(|field| record.get(field)?.as_str())
                .any(|value| same_number(phone, value, region))
        });
        matching.map(|r| self.customer(r)).transpose()
    }

    /// Reads one record: each mapped field into its attribute, absent and null fields left
    /// out, counters read leniently (see [`Customer`]).
    pub fn customer(&self, record: &Map<String, Value>) -> Result<Customer, CrmError> {
        let mut canonical = Map::new();
        for ((attribute, _), field) in ATTRIBUTES.iter().zip(&self.fields) {
            let Some(value) = field.as_deref().and_then(|f| record.get(f)) else {
                continue;
            };
            if !value.is_null() {
                canonical.insert((*attribute).to_owned(), value.clone());
            }
        }
        serde_json::from_value(Value::Object(canonical))
            .map_err(|e| CrmError::Unreadable(format!("record: {e}")))
    }

    /// The phone value of a record, as text.
    pub fn phone_of<'a>(&self, record: &'a Map<String, Value>) -> Option<&'a str> {
        record.get(self.phone()?)?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_per_kind_and_overrides() {
        let sf = FieldMap::new(CrmKind::Salesforce, &CrmFieldSettings::default());
        assert_eq!(sf.id(), "Id");
        assert_eq!(sf.email(), Some("Email"));
        assert_eq!(sf.session_hash, None);
        let d = FieldMap::new(CrmKind::Dynamics, &CrmFieldSettings::default());
        assert_eq!(
            d.columns()[..5],
            [
                "contactid",
                "firstname",
                "lastname",
                "emailaddress1",
                "telephone1"
            ]
        );
        let custom = CrmFieldSettings {
            loyalty_tier: Some("Tier__c".into()),
            previous_tickets: Some(String::new()),
            session_hash: Some("Session__c".into()),
            ..Default::default()
        };
        let sf = FieldMap::new(CrmKind::Salesforce, &custom);
        let columns = sf.columns();
        assert!(columns.contains(&"Tier__c") && columns.contains(&"Session__c"));
        assert!(!columns.contains(&"Previous_Tickets__c"));
        assert_eq!(sf.phone_search.as_deref(), Some("Phone"));
    }

    #[test]
    fn a_record_is_read_through_the_mapping() {
        let map = FieldMap::new(CrmKind::Salesforce, &CrmFieldSettings::default());
        let record = json!({
            "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/003"},
            "Id": "003", "FirstName": "Jane", "LastName": null, "Email": "jane@example.com",
            "Loyalty_Tier__c": "Gold", "Loyalty_Points__c": 1200.0, "Previous_Tickets__c": "2"
        });
        let customer = map.customer(record.as_object().unwrap()).unwrap();
        assert_eq!(customer.id, "003");
        assert_eq!(customer.first_name.as_deref(), Some("Jane"));
        assert_eq!(customer.last_name, None);
        assert_eq!(customer.loyalty_tier.as_deref(), Some("Gold"));
        assert_eq!(
            (customer.loyalty_points, customer.previous_tickets),
            (Some(1200), Some(2))
        );
        assert!(map
            .customer(json!({"FirstName": "x"}).as_object().unwrap())
            .is_err());
    }
}
