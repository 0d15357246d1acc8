use super::*;

fn load(vars: &[(&str, &str)]) -> Result<Settings, config::ConfigError> {
    let env = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load_from(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .as_path(),
        &env,
    )
}

#[test]
fn defaults_load_and_name_the_missing_credentials() {
    let settings = load(&[]).unwrap();
    assert_eq!(settings.genesys.requests_per_minute, 300);
    assert_eq!(settings.amqp.namespace, "prechat");
    let err = settings.validate().unwrap_err();
    assert_eq!(err.key, "ingest.auth_tokens");
}

#[test]
fn env_vars_override_files_and_parse_lists_maps_and_booleans() {
    let settings = load(&[
        ("PRECHAT_ENV", "sandbox"),
        ("PRECHAT__INGEST__AUTH_TOKENS", "tok-a,tok-b"),
        ("PRECHAT__ROUTING__QUEUES__PLATINUM", "Platinum Support"),
        ("PRECHAT__INGEST__ALLOW_UNAUTHENTICATED", "true"),
        ("PRECHAT__WORKER__CONCURRENCY", "3"),
        ("PRECHAT__AMQP__URL", "amqp://a:5672,amqp://b:5672"),
    ])
    .unwrap();
    let tokens: Vec<_> = settings
        .ingest
        .auth_tokens
        .iter()
        .map(|t| t.expose_secret().to_string())
        .collect();
    assert_eq!(tokens, ["tok-a", "tok-b"]);
    assert_eq!(settings.routing.queues["platinum"], "Platinum Support");
    assert!(settings.ingest.allow_unauthenticated);
    assert_eq!(settings.worker.concurrency, 3);
    assert_eq!(settings.amqp.url.len(), 2);
    settings.validate().unwrap();
}

#[test]
fn tutorial_variable_names_work_but_prechat_names_win() {
    let settings = load(&[
        ("GENESYS_CLIENT_ID", "from-alias"),
        ("GENESYS_CLIENT_SECRET", "alias-secret"),
        ("CRM_API_KEY", "crm-alias"),
        ("PRECHAT__GENESYS__CLIENT_SECRET", "prechat-secret"),
    ])
    .unwrap();
    assert_eq!(settings.genesys.client_id, "from-alias");
    assert_eq!(
        settings.genesys.client_secret.expose_secret(),
        "prechat-secret"
    );
    assert_eq!(settings.crm.api_key.expose_secret(), "crm-alias");
}

#[test]
fn env_values_keep_their_text_and_a_single_item_is_still_a_list() {
    let settings = load(&[
        ("GENESYS_CLIENT_SECRET", "0123"),
        ("CRM_BASE_URL", "http://crm.internal:8081"),
        ("PRECHAT__INGEST__AUTH_TOKENS", "12345"),
        ("PRECHAT__AMQP__RETRY_DELAYS_SECS", "30"),
        ("PRECHAT__CRM__API_KEY", "true"),
    ])
    .unwrap();
    assert_eq!(settings.genesys.client_secret.expose_secret(), "0123");
    assert_eq!(settings.crm.base_url, "http://crm.internal:8081");
    assert_eq!(settings.ingest.auth_tokens.len(), 1);
    assert_eq!(settings.ingest.auth_tokens[0].expose_secret(), "12345");
    assert_eq!(settings.amqp.retry_delays_secs, [30]);
    assert_eq!(settings.crm.api_key.expose_secret(), "true");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let settings = load(&[
        ("PRECHAT_ENV", "sandbox"),
        ("PRECHAT__GENESYS__CLIENT_SECRET", "very-secret-value"),
        ("PRECHAT__PRIVACY__SESSION_HASH_KEY", "hash-key-value"),
    ])
    .unwrap();
    let debug = format!("{settings:?}");
    for secret in [
        "very-secret-value",
        "hash-key-value",
        "demo-ingest-token",
        "sandbox-crm-key",
        "guest:guest",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }
}

#[test]
fn a_bad_value_fails_with_a_message_naming_the_key() {
    let err = load(&[("PRECHAT__WORKER__CONCURRENCY", "many")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("concurrency"), "{err}");
    let err = load(&[("PRECHAT__ROUTING__MODE", "teleport")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("mode"), "{err}");
    let settings = load(&[
        ("PRECHAT_ENV", "sandbox"),
        ("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "0"),
    ])
    .unwrap();
    assert_eq!(
        settings.validate().unwrap_err().key,
        "genesys.requests_per_minute"
    );
}

#[test]
fn genesys_urls_derive_from_the_domain_unless_overridden() {
    let settings = load(&[("PRECHAT__GENESYS__DOMAIN", "mypurecloud.ie")]).unwrap();
    assert_eq!(settings.genesys_api_url(), "https://api.mypurecloud.ie");
    assert_eq!(settings.genesys_login_url(), "https://login.mypurecloud.ie");
}

#[test]
fn the_management_url_follows_the_first_amqp_url_unless_given_or_empty() {
    let url = |vars: &[(&str, &str)]| load(vars).unwrap().management_url();
    assert_eq!(url(&[]).as_deref(), Some("http://127.0.0.1:15672"));
    assert_eq!(
        url(&[(
            "PRECHAT__AMQP__URL",
            "amqp://u:p@rabbit-0:5672/%2f,amqp://rabbit-1"
        )])
        .as_deref(),
        Some("http://rabbit-0:15672")
    );
    assert_eq!(
        url(&[("PRECHAT__AMQP__URL", "amqps://u:p@mq.example.com:5671/prod")]).as_deref(),
        Some("https://mq.example.com:15671")
    );
    assert_eq!(
        url(&[("PRECHAT__AMQP__URL", "amqp://[::1]:5672")]).as_deref(),
        Some("http://[::1]:15672")
    );
    assert_eq!(
        url(&[("PRECHAT__AMQP__MANAGEMENT_URL", "http://mgmt:8080")]).as_deref(),
        Some("http://mgmt:8080")
    );
    assert_eq!(url(&[("PRECHAT__AMQP__MANAGEMENT_URL", "")]), None);
}

#[test]
fn the_built_in_defaults_need_no_config_directory() {
    let empty = std::env::temp_dir().join(format!("prechat-no-config-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let env = [(
        "PRECHAT__AMQP__NAMESPACE".to_string(),
        "elsewhere".to_string(),
    )]
    .into();
    let settings = Settings::load_from(&empty, &env).unwrap();
    std::fs::remove_dir_all(&empty).ok();
    assert_eq!(settings.genesys.requests_per_minute, 300);
    assert_eq!(settings.worker.concurrency, 8);
    assert_eq!(settings.amqp.namespace, "elsewhere");
}

#[test]
fn each_role_checks_only_the_secrets_it_uses() {
    // Defaults: no ingest token and no Genesys credentials.
    let settings = load(&[]).unwrap();
    assert_eq!(
        settings.validate_for(Roles::INGEST).unwrap_err().key,
        "ingest.auth_tokens"
    );
    assert_eq!(
        settings.validate_for(Roles::WORKER).unwrap_err().key,
        "genesys.client_id"
    );
    assert!(settings.validate_for(Roles::BROKER).is_ok());

    let ingest_only = load(&[("PRECHAT__INGEST__AUTH_TOKENS", "tok-a")]).unwrap();
    assert!(ingest_only.validate_for(Roles::INGEST).is_ok());
    assert_eq!(
        ingest_only.validate_for(Roles::ALL).unwrap_err().key,
        "genesys.client_id"
    );

    let worker_only = load(&[
        ("PRECHAT__GENESYS__CLIENT_ID", "id"),
        ("PRECHAT__GENESYS__CLIENT_SECRET", "secret"),
    ])
    .unwrap();
    assert!(worker_only.validate_for(Roles::WORKER).is_ok());
    assert_eq!(
        worker_only.validate_for(Roles::ALL).unwrap_err().key,
        "ingest.auth_tokens"
    );
}

#[test]
fn in_process_waits_stay_well_under_the_broker_s_consumer_timeout() {
    let settings = load(&[("PRECHAT_ENV", "sandbox")]).unwrap();
    assert_eq!(settings.amqp.consumer_timeout_ms, 1_800_000);
    assert_eq!(settings.genesys.max_wait_ms, 30_000);
    settings.validate().unwrap();
    // key set, value, consumer_timeout_ms, the key named (None: valid)
    for (key, value, consumer_timeout, named) in [
        ("PRECHAT__GENESYS__MAX_WAIT_MS", "180000", "1800000", None),
        (
            "PRECHAT__GENESYS__MAX_WAIT_MS",
            "180001",
            "1800000",
            Some("genesys.max_wait_ms"),
        ),
        (
            "PRECHAT__GENESYS__MAX_WAIT_MS",
            "30000",
            "60000",
            Some("genesys.max_wait_ms"),
        ),
        (
            "PRECHAT__GENESYS__TIMEOUT_MS",
            "10000",
            "60000",
            Some("genesys.timeout_ms"),
        ),
        (
            "PRECHAT__CRM__TIMEOUT_MS",
            "7000",
            "60000",
            Some("crm.timeout_ms"),
        ),
        // The resolver holds a waiting submission unacknowledged until its deadline.
        ("PRECHAT__WORKER__DEADLINE_SECS", "1799", "1800000", None),
        (
            "PRECHAT__WORKER__DEADLINE_SECS",
            "1800",
            "1800000",
            Some("worker.deadline_secs"),
        ),
    ] {
        let settings = load(&[
            ("PRECHAT_ENV", "sandbox"),
            ("PRECHAT__GENESYS__TIMEOUT_MS", "5000"),
            ("PRECHAT__GENESYS__MAX_WAIT_MS", "5000"),
            ("PRECHAT__CRM__TIMEOUT_MS", "5000"),
            (key, value),
            ("PRECHAT__AMQP__CONSUMER_TIMEOUT_MS", consumer_timeout),
        ])
        .unwrap();
        assert_eq!(
            settings.validate().err().map(|e| e.key),
            named,
            "{key}={value} with consumer_timeout_ms={consumer_timeout}"
        );
    }
}

#[test]
fn the_placeholder_secrets_of_the_kubernetes_example_are_refused_naming_the_key() {
    // Every `KEY: "value"` of the example Secret holding a placeholder, each set alone on
    // otherwise valid settings, fails the validation with the key it configures.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/secret.example.yaml"),
    )
    .unwrap();
    let expected_key = |var: &str| match var {
        "PRECHAT__AMQP__URL" => "amqp.url",
        "PRECHAT__INGEST__AUTH_TOKENS" => "ingest.auth_tokens",
        "GENESYS_CLIENT_ID" => "genesys.client_id",
        "GENESYS_CLIENT_SECRET" => "genesys.client_secret",
        "CRM_API_KEY" => "crm.api_key",
        "PRECHAT__PRIVACY__SESSION_HASH_KEY" => "privacy.session_hash_key",
        other => panic!("a placeholder for {other}: add it to this test"),
    };
    let valid = [
        (
            "PRECHAT__AMQP__URL",
            "amqp://prechat:s3cret@rabbit:5672/%2f",
        ),
        ("PRECHAT__INGEST__AUTH_TOKENS", "a-real-token"),
        ("GENESYS_CLIENT_ID", "6a1c0f6e-client"),
        ("GENESYS_CLIENT_SECRET", "a-real-secret"),
        ("CRM_API_KEY", "a-real-key"),
        ("PRECHAT__PRIVACY__SESSION_HASH_KEY", "a-real-hash-key"),
    ];
    load(&valid).unwrap().validate().unwrap();
    let mut seen = 0;
    for line in example.lines() {
        let Some((var, value)) = line.trim().split_once(": \"") else {
            continue;
        };
        let value = value.trim_end_matches('"');
        if !var.chars().all(|c| c.is_ascii_uppercase() || c == '_') || !value.contains("CHANGE-ME")
        {
            continue;
        }
        seen += 1;
        let vars: Vec<(&str, &str)> = valid
            .iter()
            .map(|&(k, v)| if k == var { (k, value) } else { (k, v) })
            .collect();
        let err = load(&vars).unwrap().validate().unwrap_err();
        assert_eq!(err.key, expected_key(var), "{var}");
        assert!(
            !err.to_string().contains("CHANGE-ME-"),
            "the message does not repeat the value: {err}"
        );
    }
    assert_eq!(seen, 6, "every placeholder of the example was tried");
}
