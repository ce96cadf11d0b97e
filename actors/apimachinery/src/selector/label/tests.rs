use super::*;
use serde_json::json;

fn labels(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn parse_err(s: &str) -> String {
    let e = LabelSelector::parse(s).expect_err(s);
    assert_eq!(e.code, 400);
    assert_eq!(e.reason, "BadRequest");
    e.message
}

#[test]
fn parses_every_operator() {
    let sel = LabelSelector::parse("a=1,b==2,c!=3,d in (x,y),e notin (z),f,!g,h>1,i<9").unwrap();
    let ops: Vec<(&str, Operator)> = sel.requirements().iter().map(|r| (r.key(), r.operator())).collect();
    assert_eq!(
        ops,
        vec![
            ("a", Operator::Equals),
            ("b", Operator::DoubleEquals),
            ("c", Operator::NotEquals),
            ("d", Operator::In),
            ("e", Operator::NotIn),
            ("f", Operator::Exists),
            ("g", Operator::DoesNotExist),
            ("h", Operator::GreaterThan),
            ("i", Operator::LessThan),
        ]
    );
    assert_eq!(sel.requirements()[3].values(), ["x", "y"]);
}

#[test]
fn display_is_canonical_and_sorted_by_key() {
    let sel = LabelSelector::parse(" z in ( b , a , b ) , !y,x, w != 1 , v==2,u>3 ").unwrap();
    assert_eq!(sel.to_string(), "u>3,v==2,w!=1,x,!y,z in (a,b)");
    assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
}

#[test]
fn whitespace_and_empty_input() {
    assert!(LabelSelector::parse("").unwrap().is_empty());
    assert!(LabelSelector::parse("  \t ").unwrap().is_empty());
    let sel = LabelSelector::parse("\tenv\n=\rprod ").unwrap();
    assert_eq!(sel.to_string(), "env=prod");
}

#[test]
fn empty_values() {
    assert_eq!(LabelSelector::parse("a=").unwrap().requirements()[0].values(), [""]);
    assert_eq!(LabelSelector::parse("a=,b").unwrap().to_string(), "a=,b");
    assert_eq!(LabelSelector::parse("a in ()").unwrap().requirements()[0].values(), [""]);
    assert_eq!(LabelSelector::parse("a in (x,,y)").unwrap().requirements()[0].values(), ["", "x", "y"]);
    assert_eq!(LabelSelector::parse("a in (,x)").unwrap().requirements()[0].values(), ["", "x"]);
    assert_eq!(LabelSelector::parse("a in (x,)").unwrap().requirements()[0].values(), ["", "x"]);
}

#[test]
fn keywords_are_plain_words_outside_operator_position() {
    let sel = LabelSelector::parse("in in (in,notin),notin=in").unwrap();
    assert_eq!(sel.to_string(), "in in (in,notin),notin=in");
}

#[test]
fn prefixed_keys() {
    let sel = LabelSelector::parse("app.kubernetes.io/name=web").unwrap();
    assert_eq!(sel.requirements()[0].key(), "app.kubernetes.io/name");
}

#[test]
fn syntax_errors_read_like_upstream() {
    assert_eq!(parse_err("a=b,"), "found '', expected: identifier after ','");
    assert_eq!(parse_err("a=b c"), "found 'c', expected: ',' or 'end of string'");
    assert_eq!(parse_err(",a"), "found ',', expected: !, identifier, or 'end of string'");
    assert_eq!(parse_err("a b"), "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt");
    assert_eq!(parse_err("a in x"), "unable to parse requirement: found 'x' expected: '('");
    assert_eq!(parse_err("a in (x"), "unable to parse requirement: found '', expected: ',' or ')'");
    assert_eq!(parse_err("a in (="), "unable to parse requirement: found '=', expected: ',', ')' or identifier");
    assert_eq!(parse_err("a=(b)"), "unable to parse requirement: found '(', expected: identifier");
    assert_eq!(parse_err("!"), "unable to parse requirement: found '', expected: identifier");
    assert_eq!(parse_err("!a=b"), "found '=', expected: ',' or 'end of string'");
}

#[test]
fn validation_errors_read_like_upstream() {
    assert!(parse_err("a$b=c").starts_with(
        "unable to parse requirement: <nil>: Invalid value: \"a$b\": name part must consist of alphanumeric characters"
    ));
    assert!(parse_err("a=b$").starts_with(
        "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label must be an empty string"
    ));
    assert_eq!(
        parse_err("a>b"),
        "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
    let both = parse_err("a in (x$,y$)");
    assert!(both.starts_with("unable to parse requirement: [values[0][a]: "), "{both}");
    assert!(both.contains(", values[1][a]: Invalid value: \"y$\""), "{both}");
}

#[test]
fn matching() {
    let l = labels(json!({"app": "web", "tier": "front", "replicas": "3"}));
    let yes = [
        "",
        "app=web",
        "app==web",
        "app!=db",
        "missing!=x",
        "app in (db,web)",
        "app notin (db)",
        "missing notin (x)",
        "app",
        "!missing",
        "replicas>2",
        "replicas<4",
        "app=web,tier",
    ];
    for s in yes {
        assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s} should match");
    }
    let no = [
        "app=db",
        "app!=web",
        "missing=x",
        "app in (db)",
        "app notin (web)",
        "missing in (x)",
        "missing",
        "!app",
        "replicas>3",
        "replicas<3",
        "app>1",
        "missing>1",
        "app=web,!tier",
    ];
    for s in no {
        assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s} should not match");
    }
}

#[test]
fn empty_value_matches_only_present_empty_label() {
    let sel = LabelSelector::parse("a=").unwrap();
    assert!(sel.matches(&labels(json!({"a": ""}))));
    assert!(!sel.matches(&labels(json!({}))));
}

#[test]
fn matches_object_reads_metadata_labels() {
    let sel = LabelSelector::parse("app=web").unwrap();
    assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert!(!sel.matches_object(&json!({"metadata": {}})));
    assert!(LabelSelector::parse("!app").unwrap().matches_object(&json!({})));
}

#[test]
fn from_json_match_labels_and_expressions() {
    let sel = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist", "values": []}
        ]
    }))
    .unwrap();
    assert_eq!(sel.to_string(), "app=web,env notin (dev),!legacy,team,tier in (back,front)");
    assert!(sel.matches(&labels(json!({"app": "web", "tier": "back", "team": "x"}))));
    assert!(!sel.matches(&labels(json!({"app": "web", "tier": "back", "team": "x", "legacy": "1"}))));
    assert!(!sel.matches(&labels(json!({"app": "web", "tier": "mid", "team": "x"}))));
    assert!(!sel.matches(&labels(json!({"app": "web", "tier": "back", "team": "x", "env": "dev"}))));
}

#[test]
fn from_json_empty_matches_everything_null_matches_nothing() {
    let empty = LabelSelector::from_json(&json!({})).unwrap();
    assert!(empty.is_empty());
    assert!(empty.matches(&Map::new()));
    let also_empty = LabelSelector::from_json(&json!({"matchLabels": {}, "matchExpressions": []})).unwrap();
    assert!(also_empty.is_empty());

    let none = LabelSelector::from_json(&Value::Null).unwrap();
    assert_eq!(none, LabelSelector::nothing());
    assert!(none.matches_nothing());
    assert!(!none.is_empty());
    assert!(!none.matches(&labels(json!({"a": "b"}))));
    assert!(!none.matches(&Map::new()));
    assert_eq!(none.to_string(), "");
}

#[test]
fn from_json_errors() {
    let bad_op =
        LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]})).unwrap_err();
    assert_eq!(bad_op.message, "\"Equals\" is not a valid label selector operator");
    let no_values =
        LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).unwrap_err();
    assert_eq!(
        no_values.message,
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    );
    let extra =
        LabelSelector::from_json(&json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}))
            .unwrap_err();
    assert_eq!(
        extra.message,
        "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
    );
    let bad_key = LabelSelector::from_json(&json!({"matchLabels": {"a b": "c"}})).unwrap_err();
    assert!(bad_key.message.starts_with("key: Invalid value: \"a b\": name part"), "{}", bad_key.message);
    assert_eq!(bad_key.code, 400);
    assert!(LabelSelector::from_json(&json!("app=web")).is_err());
}

#[test]
fn from_set_and_exact_match() {
    let sel = LabelSelector::from_set(&labels(json!({"b": "2", "a": "1"})));
    assert_eq!(sel.to_string(), "a=1,b=2");
    assert_eq!(sel.requires_exact_match("b"), Some("2"));
    assert_eq!(sel.requires_exact_match("c"), None);
    assert!(LabelSelector::from_set(&Map::new()).is_empty());
    let set = LabelSelector::parse("a in (x),b in (x,y),c!=z").unwrap();
    assert_eq!(set.requires_exact_match("a"), Some("x"));
    assert_eq!(set.requires_exact_match("b"), None);
    assert_eq!(set.requires_exact_match("c"), None);
}

#[test]
fn requirement_new_checks_arity() {
    assert!(Requirement::new("a", Operator::Equals, vec![]).is_err());
    assert!(Requirement::new("a", Operator::GreaterThan, vec!["-5".into()]).is_err());
    assert!(Requirement::new("a", Operator::LessThan, vec!["5".into()]).is_ok());
    let r = Requirement::new("a", Operator::NotIn, vec!["y".into(), "x".into()]).unwrap();
    assert_eq!(r.to_string(), "a notin (x,y)");
}

#[test]
fn typed_selectors_match_like_json_ones() {
    let typed: metav1::LabelSelector = serde_json::from_value(serde_json::json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "legacy", "operator": "DoesNotExist"}]
    }))
    .unwrap();
    let sel = LabelSelector::from_typed(Some(&typed)).unwrap();
    let json = LabelSelector::from_json(&serde_json::to_value(&typed).unwrap()).unwrap();
    assert_eq!(sel, json);
    let labels = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
        l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert!(sel.matches_labels(&labels(&[("app", "web"), ("tier", "a")])));
    assert!(!sel.matches_labels(&labels(&[("app", "web"), ("tier", "c")])));
    assert!(!sel.matches_labels(&labels(&[("app", "web"), ("tier", "a"), ("legacy", "")])));
    assert!(LabelSelector::from_typed(None).unwrap().matches_nothing());
    assert!(LabelSelector::from_typed(Some(&Default::default())).unwrap().is_empty());
    let bad = metav1::LabelSelector {
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: "a".into(),
            operator: "Gt".into(),
            values: None,
        }]),
        ..Default::default()
    };
    assert!(LabelSelector::from_typed(Some(&bad)).is_err());
    let set = LabelSelector::from_labels(&labels(&[("app", "web")]));
    assert!(set.matches_labels(&labels(&[("app", "web"), ("x", "y")])) && !set.matches_labels(&labels(&[])));
    assert!(LabelSelector::from_labels(&labels(&[])).is_empty());
}

#[test]
fn equality_selectors_match_labels_as_built_selectors_do() {
    let labels = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
        l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let web = labels(&[("app", "web"), ("tier", "front")]);
    let cases = [
        (labels(&[("app", "web")]), true),
        (labels(&[("app", "web"), ("tier", "front")]), true),
        (labels(&[("app", "web"), ("tier", "back")]), false),
        (labels(&[("app", "db")]), false),
        (labels(&[("zone", "a")]), false),
        // An empty selector matches everything; callers decide whether it selects at all.
        (labels(&[]), true),
    ];
    for (selector, expected) in cases {
        assert_eq!(labels_match(&selector, &web), expected, "{selector:?}");
        assert_eq!(LabelSelector::from_labels(&selector).matches_labels(&web), expected, "{selector:?}");
    }
    assert!(!labels_match(&labels(&[("app", "")]), &labels(&[])), "a missing label is not an empty value");
    assert!(labels_match(&labels(&[]), &labels(&[])));
}
