//! Security checks as tests: no secret, token, raw session id or unmasked email/phone in
//! any log line of a full run; every log line of a submission carries its trace; `amqps://`
//! and HTTPS to Genesys and the CRM work with a CA given in config.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use prechat_enricher::startup::{Components, Roles};
use prechat_sim::{Customer, Fault, Route, SeedConversation};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_token_raw_session_id_or_unmasked_pii_reaches_any_log_line_and_each_line_carries_its_trace(
) {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    sim.seed_customer(Customer {
        id: "C-9".into(),
        first_name: "Secretia".into(),
        last_name: "Hidden".into(),
        email: "secretia.hidden@example.com".into(),
        phone: "+15557654321".into(),
        loyalty_tier: "gold".into(),
        account_status: "active".into(),
        loyalty_points: 1,
        previous_tickets: 0,
        session_hash: None,
    });
    let namespace = unique_namespace("logs");
    let bind = format!("127.0.0.1:{}", free_port());
    let secrets = [
        ("PRECHAT__GENESYS__CLIENT_SECRET", "sandbox-secret"),
        (
            "PRECHAT__PRIVACY__SESSION_HASH_KEY",
            "hash-key-never-logged",
        ),
    ];
    let mut overrides: Vec<(&str, &str)> = vec![
        ("PRECHAT__INGEST__BIND", &bind),
        ("PRECHAT__LOG__FORMAT", "json"),
        ("PRECHAT__LOG__LEVEL", "prechat_enricher=debug,info"),
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
    ];
    overrides.extend(secrets);
    let env = test_env(&sim, &namespace, &overrides);
    let guard = NamespaceGuard::new(&test_settings(&sim, &namespace, &[]));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
        .arg("serve")
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .env_remove("RUST_LOG")
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });

    let client = http();
    let url = format!("http://{bind}");
    let ready = wait_until(Duration::from_secs(30), || async {
        client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    assert!(ready.is_some());
    let post = |body: Value, traceparent: Option<String>| {
        let mut request = client
            .post(format!("{url}/v1/submissions"))
            .bearer_auth(TOKEN)
            .json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    let traced = sim.seed_conversation(SeedConversation::default());
    let body = json!({
        "conversationId": traced.id,
        "guest": {"email": "Secretia.Hidden@example.com", "phone": "+1 555 765 4321", "sessionId": "raw-session-never-logged", "verified": true},
        "consent": {"given": true, "type": "explicit"}
    });
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    assert_eq!(post(body, Some(traceparent)).await.unwrap().status(), 202);
    let failing = sim.seed_conversation(SeedConversation::default());
    sim.add_fault(Fault {
        conversation_id: Some(failing.id.clone()),
        ..Fault::new(Route::PatchAttributes, 400)
    });
    let body = json!({"conversationId": failing.id, "guest": {"email": "secretia.hidden@example.com", "sessionId": "raw-session-never-logged-2"}});
    assert_eq!(post(body, None).await.unwrap().status(), 202);
    let bad = json!({"guest": {"email": "not-an-email-secretia", "sessionId": "raw-session-never-logged-3"}});
    assert_eq!(post(bad, None).await.unwrap().status(), 400);
    let unauthorized = client
        .post(format!("{url}/v1/submissions"))
        .bearer_auth("wrong-token-never-logged")
        .json(&json!({}))
        .send();
    assert_eq!(unauthorized.await.unwrap().status(), 401);
    // The attributes are written last: after that the traced submission makes no more calls,
    // so revoking the tokens cannot add a retried one to its trace.
    wait_until(Duration::from_secs(20), || async {
        let view = sim.conversation(&traced.id)?;
        (view.linked_contact_id.is_some() && view.attribute_patches > 0).then_some(())
    })
    .await
    .expect("enriched and linked");
    sim.revoke_tokens();
    let third = sim.seed_conversation(SeedConversation::default());
    let body = json!({"conversationId": third.id, "guest": {"phone": "+15557654321"}, "consent": {"given": true}});
    assert_eq!(post(body, None).await.unwrap().status(), 202);
    wait_until(Duration::from_secs(20), || async {
        (sim.conversation(&third.id)?.attribute_patches > 0).then_some(())
    })
    .await
    .expect("enriched after the token was revoked");

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    let logs = logs.await.unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 10, "the run logged: {logs}");
    let forbidden = [
        "sandbox-secret",
        "hash-key-never-logged",
        TOKEN,
        "wrong-token-never-logged",
        "sandbox-crm-key",
        "raw-session-never-logged",
        "secretia.hidden@example.com",
        "Secretia.Hidden",
        "5557654321",
        "Secretia",
        "guest:guest",
        "Bearer ",
        "access_token",
    ];
    for line in &lines {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        for secret in forbidden {
            assert!(
                !line.contains(secret),
                "{secret:?} leaked into a log line: {line}"
            );
        }
        if line.contains(&traced.id) {
            assert!(
                line.contains(TRACE_ID),
                "a line of the traced submission lacks its trace: {line}"
            );
        }
        assert!(parsed.is_object());
    }
    assert!(lines
        .iter()
        .any(|l| l.contains(TRACE_ID) && l.contains("submission enriched")));
    assert_eq!(
        sim.stats().calls_in_trace(TRACE_ID),
        5,
        "every call of the traced submission carried its trace: CRM, GET, enrich, link, PATCH"
    );
    guard.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amqps_and_https_work_with_the_ca_given_in_config() {
    let pki = crate::common::tls::TestPki::new();
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let https_port = pki.proxy(sim.local_addr()).await;
    let amqps_port = pki.proxy("127.0.0.1:5672".parse().unwrap()).await;
    let https = format!("https://127.0.0.1:{https_port}");
    let amqps = format!("amqps://guest:guest@127.0.0.1:{amqps_port}/%2f");
    let ca_file = pki.ca_file.to_string_lossy().to_string();
    let tls_overrides = [
        ("PRECHAT__AMQP__URL", amqps.as_str()),
        ("PRECHAT__GENESYS__API_URL", https.as_str()),
        ("PRECHAT__GENESYS__LOGIN_URL", https.as_str()),
        ("PRECHAT__CRM__BASE_URL", https.as_str()),
    ];

    // Without the CA, the TLS peers are not trusted.
    let untrusted = Components::build(
        test_settings(&sim, &unique_namespace("no-ca"), &tls_overrides),
        Roles::ALL,
    )
    .unwrap();
    assert!(
        untrusted.genesys.check_credentials().await.is_err(),
        "an unknown CA is refused"
    );
    assert!(
        untrusted.publish_broker.channel().await.is_err(),
        "an unknown CA is refused by amqps"
    );

    let mut with_ca = tls_overrides.to_vec();
    with_ca.push(("PRECHAT__TLS__CA_FILE", ca_file.as_str()));
    let settings = test_settings(&sim, &unique_namespace("tls"), &with_ca);
    let app = start(sim, settings, Roles::ALL).await;
    app.sim.seed_customer(Customer {
        id: "T-1".into(),
        email: "tls@example.com".into(),
        loyalty_tier: "gold".into(),
        ..Customer::default()
    });
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    assert_eq!(
        app.post(&submission(&conversation.id, "tls@example.com"))
            .await
            .status(),
        202
    );
    let attributes = wait_until(Duration::from_secs(20), || async {
        let view = app.sim.conversation(&conversation.id)?;
        (view.attribute_patches > 0).then_some(view.attributes)
    })
    .await
    .expect("enriched over amqps and https");
    assert_eq!(attributes["crmCustomerId"], "T-1");
    app.cleanup().await;
}
