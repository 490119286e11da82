//! The fast path of `/v1/score` agrees with the general one.

use super::*;
use proptest::prelude::*;

fn scorer(env: &Env) -> Scorer {
    Scorer::from_loaded(
        env.registry()
            .load("churn", &Selector::Alias("production".into()))
            .unwrap(),
    )
    .unwrap()
}

/// One feature's value as JSON text: mostly numbers, sometimes null, a boolean, a
/// string, an array, an escape-laden or huge number.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        400 => (-1e6f64..1e6).prop_map(|x| format!("{x}")),
        200 => (0u32..500).prop_map(|x| x.to_string()),
        3 => Just("null".to_string()),
        1 => Just("true".to_string()),
        1 => Just("\"3\"".to_string()),
        1 => Just("[1]".to_string()),
        1 => Just("1e999".to_string()),
        1 => Just("-0".to_string()),
        1 => Just("18446744073709551616".to_string()),
    ]
}

fn body() -> impl Strategy<Value = (String, bool)> {
    let names: Vec<String> = fixture().features.iter().map(|(n, _)| n.clone()).collect();
    let n = names.len();
    (
        prop::collection::vec(value_text(), n),
        prop::collection::vec(0u8..200, n),
        prop_oneof![
            6 => Just("\"c1\"".to_string()),
            1 => Just("\"  \"".to_string()),
            1 => Just("7".to_string()),
            1 => Just("null".to_string()),
            1 => Just(format!("\"{}\"", "x".repeat(300))),
            1 => Just("\"c\\u0031\"".to_string()),
        ],
        prop_oneof![
            4 => Just(None),
            1 => Just(Some("null".to_string())),
            1 => Just(Some("\"2024-06-01\"".to_string())),
            1 => Just(Some("\"2024-13-01\"".to_string())),
            1 => Just(Some("\"9999-01-01\"".to_string())),
            1 => Just(Some("3".to_string())),
        ],
        prop::collection::vec(("[a-z_]{1,8}", value_text()), 0..3),
        0u8..8,
    )
        .prop_map(move |(values, fates, id, as_of, extra, shape)| {
            let mut fields = Vec::new();
            let mut no_duplicates = true;
            for ((name, v), fate) in names.iter().zip(&values).zip(&fates) {
                match fate {
                    0 => {} // left out
                    1 => {
                        fields.push(format!("\"{name}\":{v}"));
                        fields.push(format!("\"{name}\":{v}"));
                        no_duplicates = false;
                    }
                    2 => fields.push(format!("\"{name}\":null")),
                    _ => fields.push(format!("\"{name}\":{v}")),
                }
            }
            for (k, v) in &extra {
                fields.push(format!("\"{k}\":{v}"));
            }
            let features = format!("{{{}}}", fields.join(","));
            let mut top = vec![
                format!("\"customer_id\":{id}"),
                format!("\"features\":{features}"),
            ];
            if let Some(a) = &as_of {
                top.push(format!("\"as_of\":{a}"));
            }
            match shape {
                0 => top.push("\"activity\":null".to_string()),
                1 => top.push("\"activity\":{}".to_string()),
                2 => top.push("\"note\":[1,{\"a\":2}]".to_string()),
                3 => top.push("\"customer_id\":\"c2\"".to_string()),
                _ => {}
            }
            (
                format!("{{{}}}", top.join(",")),
                no_duplicates && shape != 3,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Whenever the fast path answers, it answers exactly what the careful path does;
    /// and it answers every valid request without duplicate keys.
    #[test]
    fn the_fast_path_agrees_with_the_careful_path((text, no_duplicates) in body()) {
        static SCORER: OnceLock<Scorer> = OnceLock::new();
        let scorer = SCORER.get_or_init(|| scorer(&Env::new()));
        let now = 1_735_603_200;
        let fast = crate::serve::fast::prepare(scorer, text.as_bytes(), now);
        let careful = serde_json::from_slice::<Value>(text.as_bytes())
            .ok()
            .and_then(|v| crate::serve::routes::prepare(scorer, &v, "", now).ok());
        if let Some(f) = fast {
            prop_assert!(careful.is_some(), "the careful path refuses what the fast path accepts: {}", text);
            let c = careful.unwrap();
            prop_assert_eq!(&f.customer_id, &c.customer_id);
            prop_assert_eq!(f.as_of, c.as_of);
            prop_assert_eq!(&f.ignored, &c.ignored);
            prop_assert_eq!(f.row.len(), c.row.len());
            for (a, b) in f.row.iter().zip(&c.row) {
                prop_assert!(a.to_bits() == b.to_bits(), "{} vs {}", a, b);
            }
            prop_assert_eq!(c.form.as_str(), "features");
        } else {
            prop_assert!(careful.is_none() || !no_duplicates, "fast path refused {}", text);
        }
    }
}

#[test]
fn a_plain_request_takes_the_fast_path() {
    let scorer = scorer(&Env::new());
    let fields: Vec<String> = fixture()
        .features
        .iter()
        .map(|(name, _)| format!("\"{name}\":1"))
        .collect();
    let text = format!(
        "{{\"customer_id\":\"c1\",\"as_of\":\"2024-06-01\",\"features\":{{{},\"zz\":2}},\"note\":1}}",
        fields.join(",")
    );
    let now = crate::time::parse_ts("2024-12-31").unwrap();
    let fast = crate::serve::fast::prepare(&scorer, text.as_bytes(), now).expect("fast");
    assert_eq!(fast.customer_id, "c1");
    assert_eq!(fast.as_of, crate::time::parse_ts("2024-06-01").unwrap());
    assert_eq!(fast.row, vec![1.0; fixture().features.len()]);
    assert_eq!(
        fast.ignored,
        vec!["note".to_string(), "features.zz".to_string()]
    );
}
