use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn status(body: &str) -> ResponseStatus {
    match parse(body) {
        Response::Status(status) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

#[test]
fn batch_save_partial_success() {
    let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"ErrorCode":500,"MsgCode":9,
        "Errors":[{"FieldName":"FMaterialId","Message":"物料编码 X 不存在","DIndex":1}],
        "SuccessEntitys":[{"Id":100001,"Number":"JST-1","DIndex":0},{"Id":"100002","Number":"JST-3","DIndex":"2"}],
        "SuccessMessages":[]},"NeedReturnData":[]}}"#;
    let status = status(body);
    assert!(!status.is_success);
    assert_eq!(status.error_code, Some(500));
    assert_eq!(status.msg_code, Some(9));
    assert_eq!(status.errors.len(), 1);
    assert_eq!(status.errors[0].field_name.as_deref(), Some("FMaterialId"));
    assert_eq!(status.errors[0].dindex, Some(1));
    assert_eq!(status.success_entities.len(), 2);
    assert_eq!(status.success_entities[0].id.as_deref(), Some("100001"));
    assert_eq!(status.success_entities[1].dindex, Some(2));
    assert_eq!(status.success_entities[1].number.as_deref(), Some("JST-3"));
}

#[test]
fn single_save_result_id() {
    let status = status(r#"{"Result":{"ResponseStatus":{"IsSuccess":"true","SuccessEntitys":[]},"Id":7,"Number":"JST-7"}}"#);
    assert!(status.is_success);
    assert_eq!(status.result_id.as_deref(), Some("7"));
    assert_eq!(status.result_number.as_deref(), Some("JST-7"));
}

#[test]
fn query_rows() {
    assert_eq!(parse(r#"[[100001,"JST-1"],[100002,"JST-2"]]"#), Response::Rows(vec![vec![json!(100001), json!("JST-1")], vec![json!(100002), json!("JST-2")]]));
    assert_eq!(parse("[]"), Response::Rows(vec![]));
}

#[test]
fn query_error_wrapped_twice() {
    let body = r#"[[{"Result":{"ResponseStatus":{"ErrorCode":500,"IsSuccess":false,"Errors":[{"FieldName":null,"Message":"过滤条件有误","DIndex":0}],"SuccessEntitys":[],"MsgCode":4}}}]]"#;
    let status = status(body);
    assert!(!status.is_success);
    assert_eq!(status.msg_code, Some(4));
    assert_eq!(status.errors[0].message, "过滤条件有误");
    assert_eq!(status.errors[0].field_name, None);
}

#[test]
fn null_status_is_missing() {
    assert_eq!(parse(r#"{"Result":{"ResponseStatus":null}}"#), Response::MissingStatus);
    assert_eq!(parse(r#"{"Result":null}"#), Response::MissingStatus);
    assert_eq!(parse(r#"{"ResponseStatus":null}"#), Response::MissingStatus);
}

#[test]
fn result_as_array() {
    let status = status(r#"{"Result":[{"ResponseStatus":{"IsSuccess":false,"MsgCode":13,"Errors":[]}}]}"#);
    assert_eq!(status.msg_code, Some(13));
    assert_eq!(parse(r#"{"Result":[[1,"A"]]}"#), Response::Rows(vec![vec![json!(1), json!("A")]]));
}

#[test]
fn errors_as_plain_strings() {
    let status = status(r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"MsgCode":"11","Errors":["编码重复","x"]}}}"#);
    assert_eq!(status.msg_code, Some(11));
    assert_eq!(status.errors.len(), 2);
    assert_eq!(status.errors[0].message, "编码重复");
    assert_eq!(status.errors[0].dindex, None);
}

#[test]
fn top_level_status() {
    let status = status(r#"{"ResponseStatus":{"IsSuccess":false,"ErrorCode":500,"MsgCode":1,"Errors":[{"Message":"会话信息已丢失，请重新登录"}]}}"#);
    assert_eq!(status.msg_code, Some(1));
    assert_eq!(status.error_code, Some(500));
}

#[test]
fn response_error_text() {
    assert_eq!(parse("response_error: 服务器内部错误"), Response::ServerError("服务器内部错误".into()));
    assert_eq!(parse("\u{feff}response_error:"), Response::ServerError(String::new()));
}

#[test]
fn login_response() {
    let body = r#"{"Message":null,"MessageCode":"CheckPasswordPolicy","LoginResultType":1,"KDSVCSessionId":"abc","Context":{"UserName":"demo"}}"#;
    let Response::Login(login) = parse(body) else { panic!("expected a login result") };
    assert!(login.is_success());
    assert_eq!(login.session_id.as_deref(), Some("abc"));
    assert_eq!(login.message_code.as_deref(), Some("CheckPasswordPolicy"));

    let Response::Login(failed) = parse(r#"{"Message":"用户名或密码错误","LoginResultType":-1}"#) else { panic!("expected a login result") };
    assert!(!failed.is_success());
    assert_eq!(failed.message.as_deref(), Some("用户名或密码错误"));
}

#[test]
fn odd_bodies_unrecognized() {
    for body in ["", "<html>502 Bad Gateway</html>", "42", "\"text\"", "[1,2]", "[[{\"a\":1}]]", r#"{"Foo":1}"#, r#"{"Result":{"ResponseStatus":5}}"#] {
        assert!(matches!(parse(body), Response::Unrecognized(_)), "{body}");
    }
}

#[test]
fn excerpt_is_bounded() {
    let long = "中".repeat(1000);
    let cut = excerpt(&long);
    assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
    assert!(cut.ends_with('…'));
}

fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Result".to_string()),
        Just("ResponseStatus".to_string()),
        Just("IsSuccess".to_string()),
        Just("MsgCode".to_string()),
        Just("ErrorCode".to_string()),
        Just("Errors".to_string()),
        Just("SuccessEntitys".to_string()),
        Just("DIndex".to_string()),
        Just("Id".to_string()),
        Just("Number".to_string()),
        Just("FieldName".to_string()),
        Just("Message".to_string()),
        Just("LoginResultType".to_string()),
        Just("KDSVCSessionId".to_string()),
        "[a-zA-Z]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parse_never_panics_on_json(value in any_json()) {
        let _ = parse(&value.to_string());
    }

    #[test]
    fn parse_never_panics_on_text(text in ".{0,200}") {
        let _ = parse(&text);
        let _ = parse(&format!("response_error:{text}"));
    }

    #[test]
    fn wrapped_status_always_found(msg_code in any::<i64>(), message in ".{0,20}") {
        let body = json!([[{"Result": {"ResponseStatus": {"IsSuccess": false, "MsgCode": msg_code, "Errors": [{"Message": message}]}}}]]);
        let parsed = parse(&body.to_string());
        prop_assert!(matches!(parsed, Response::Status(ref status) if status.msg_code == Some(msg_code)), "{:?}", parsed);
    }
}
