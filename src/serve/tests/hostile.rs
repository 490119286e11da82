//! Hostile input: no request body yields a 5xx.

use super::*;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[a-z0-9 :TZ-]{0,24}".prop_map(Value::from),
        Just(json!("2024-06-01")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("customer".to_string()),
                    Just("signup_at".to_string()),
                    Just("logins".to_string()),
                    Just("tickets".to_string()),
                    Just("orders".to_string()),
                    Just("events".to_string()),
                    Just("at".to_string()),
                    Just("amount".to_string()),
                    Just("opened_at".to_string()),
                    Just("closed_at".to_string()),
                    Just("csat".to_string()),
                    Just("event_type".to_string()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn no_request_body_yields_a_5xx(
        form in 0..4u8,
        payload in json_value(),
        as_of in prop_oneof![Just(Value::Null), json_value()],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let env = Env::new();
        let (app, _) = router(&env.config());
        let (path, body) = match form {
            0 => ("/v1/score", json!({"customer_id": "p", "as_of": as_of, "features": payload})),
            1 => ("/v1/score", json!({"customer_id": "p", "as_of": as_of, "activity": payload})),
            2 => ("/v1/score/batch", json!({"instances": [payload]})),
            _ => ("/v2/models/churn/infer", json!({"inputs": [{"name": fixture().features[0].0, "datatype": "FP64", "shape": [1], "data": payload}], "parameters": {"as_of": as_of}})),
        };
        let a = rt.block_on(post_json(&app, path, &body));
        prop_assert!(a.status.is_success() || a.status.is_client_error(), "{} for {}", a.status, body);
        prop_assert!(a.body.is_object(), "{}", a.body);
    }
}
