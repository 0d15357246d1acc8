//! `prechat-enricher genesys verify` as the binary, against the sandbox: a passing run with a
//! test conversation, a client whose role lacks permissions, an org whose attribute PATCH
//! replaces, a search index slower than the wait, and bad usage. It needs no broker.

use std::collections::{BTreeMap, BTreeSet};

use prechat_sim::{spawn, SeedConversation, SimConfig, SimHandle};
use serde_json::Value;

use crate::common::{config_dir, test_env};

/// Every call the service can make: External Contacts, transfer mode, a queue by name.
const EVERYTHING: &[(&str, &str)] = &[
    ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
    ("PRECHAT__ROUTING__MODE", "transfer"),
    ("PRECHAT__ROUTING__QUEUES__GOLD", "Gold Support"),
];

struct Run {
    code: i32,
    stdout: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// `(status, detail)` of the fact named `name`.
    fn fact(&self, name: &str) -> (String, String) {
        let json = self.json();
        let fact = json["facts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no fact {name:?} in {}", self.stdout));
        (
            fact["status"].as_str().unwrap().to_owned(),
            fact["detail"].as_str().unwrap().to_owned(),
        )
    }
}

async fn verify(sim: &SimHandle, overrides: &[(&str, &str)], args: &[&str]) -> Run {
    let env = test_env(sim, "verify-unused", overrides);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
        .args(["genesys", "verify"])
        .args(args)
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .env_remove("RUST_LOG")
        .envs(&env)
        .output()
        .await
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    };
    eprintln!(
        "exit {}\n{}{}",
        run.code,
        run.stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    run
}

async fn sim_with(config: SimConfig) -> (SimHandle, String) {
    let sim = spawn(config).await.unwrap();
    sim.seed_queue("Gold Support");
    let conversation = sim.seed_conversation(SeedConversation {
        customer_attributes: BTreeMap::from([("prechatSubmissionId".into(), "sub-verify".into())]),
        ..SeedConversation::default()
    });
    (sim, conversation.id)
}

#[tokio::test]
async fn an_org_that_does_everything_the_configuration_needs_passes() {
    let (sim, conversation) = sim_with(SimConfig {
        index_delay_ms: 1_500,
        ..SimConfig::default()
    })
    .await;
    let run = verify(
        &sim,
        EVERYTHING,
        &["--conversation", &conversation, "--json"],
    )
    .await;
    assert_eq!(run.code, 0);
    let json = run.json();
    assert_eq!(json["ok"], true);
    for fact in json["facts"].as_array().unwrap() {
        assert!(
            fact["status"] == "ok" || fact["required"] == false,
            "{fact}"
        );
    }
    assert!(run.fact("token grant").1.contains("lifetime 86400 s"));
    assert!(run.fact("rate-limit headers").1.contains("allowed 300"));
    assert_eq!(run.fact("attribute PATCH merges").0, "ok");
    let delay = run.fact("search index delay").1;
    let since_start: f64 = delay
        .strip_prefix("shown ")
        .and_then(|d| d.split(" s after the conversation started").next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("{delay}"));
    assert!((1.4..10.0).contains(&since_start), "{delay}");
    assert_eq!(run.fact("contact delete (test)").0, "ok");

    let view = sim.conversation(&conversation).unwrap();
    assert_eq!(view.transfers, 0, "the transfer probe moved nothing");
    assert!(view.attributes.contains_key("prechatVerifyFirst"));
    assert!(view.attributes.contains_key("prechatVerifySecond"));
    assert_eq!(view.attributes["prechatSubmissionId"], "sub-verify");
    assert!(view.linked_contact_id.is_some(), "the link landed");
    assert!(
        sim.contacts().is_empty(),
        "the throwaway contact is deleted"
    );
}

#[tokio::test]
async fn a_permission_the_role_lacks_is_named_and_fails_the_run() {
    let denied = BTreeSet::from([
        "conversation:participant:attributesview".to_owned(),
        "externalContacts:contact:enrich".to_owned(),
    ]);
    let (sim, _) = sim_with(SimConfig {
        denied_permissions: BTreeMap::from([("sandbox-client".to_owned(), denied)]),
        ..SimConfig::default()
    })
    .await;
    let run = verify(&sim, EVERYTHING, &["--json"]).await;
    assert_eq!(run.code, 1);
    let (status, detail) = run.fact("attribute search");
    assert_eq!(status, "missing_permission");
    assert!(
        detail.starts_with("conversation:participant:attributesview"),
        "{detail}"
    );
    assert!(detail.contains("missing.any.permissions"), "{detail}");
    let (status, detail) = run.fact("contact enrich");
    assert_eq!(status, "missing_permission");
    assert!(
        detail.contains("externalContacts:contact:enrich"),
        "{detail}"
    );
    assert_eq!(run.fact("queue transfer").0, "ok");
    assert_eq!(run.fact("contact link").0, "ok");
    assert!(sim.contacts().is_empty());
}

#[tokio::test]
async fn an_attribute_patch_that_replaces_differs_from_what_the_service_assumes() {
    let (sim, conversation) = sim_with(SimConfig {
        attribute_patch_replaces: true,
        ..SimConfig::default()
    })
    .await;
    let run = verify(&sim, &[], &["--conversation", &conversation, "--json"]).await;
    assert_eq!(run.code, 1);
    let (status, detail) = run.fact("attribute PATCH merges");
    assert_eq!(status, "differs");
    assert!(detail.starts_with("replace"), "{detail}");
    assert_eq!(
        run.fact("search index delay").0,
        "ok",
        "measured before the PATCHes"
    );
}

#[tokio::test]
async fn a_search_index_slower_than_the_wait_differs() {
    let (sim, conversation) = sim_with(SimConfig {
        index_delay_ms: 60_000,
        ..SimConfig::default()
    })
    .await;
    let args = ["--conversation", &conversation, "--search-wait-secs", "2"];
    let run = verify(&sim, &[], &args).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("differs: not shown after 2 s"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("ok: merge"), "{}", run.stdout);
    assert!(run
        .stdout
        .ends_with("verify: 1 problem(s) this configuration depends on\n"));
}

#[tokio::test]
async fn without_a_conversation_the_default_configuration_passes_and_skips_the_rest() {
    let (sim, _) = sim_with(SimConfig::default()).await;
    let run = verify(&sim, &[], &[]).await;
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("skipped: routing.mode = attributes"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("skipped: no --conversation"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .ends_with("verify: ok, the org does what this configuration needs\n"));
    assert_eq!(sim.stats().calls_of("patch_attributes"), 0);
}

#[tokio::test]
async fn a_conversation_id_that_is_no_uuid_is_bad_usage() {
    let (sim, _) = sim_with(SimConfig::default()).await;
    let run = verify(&sim, &[], &["--conversation", "not-a-uuid"]).await;
    assert_eq!(run.code, 2);
    assert_eq!(sim.stats().total_genesys_calls, 0);
}
