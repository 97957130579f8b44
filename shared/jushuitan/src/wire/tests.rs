use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn page(body: &str) -> Result<SheetPage, DecodeError> {
    let envelope = decode_envelope(body)?;
    decode_page(envelope.data, 50)
}

fn sheet(json: &str) -> Result<CountSheet, DecodeError> {
    let raw: &RawValue = serde_json::from_str(json).unwrap();
    decode_sheet(raw, "datas[0]".into())
}

fn field_of(error: DecodeError) -> String {
    match error {
        DecodeError::Sheet { field, .. } => field,
        DecodeError::Body(message) => panic!("expected a field error, got body error {message}"),
    }
}

#[test]
fn fixture_page_decodes_every_field() {
    let page = page(include_str!("../../fixtures/count_query_page.json")).unwrap();
    assert!(page.has_next);
    assert_eq!(page.sheets.len(), 2);

    let first = &page.sheets[0];
    assert_eq!(first.io_id, 1001);
    assert_eq!(first.status, "Confirmed");
    assert_eq!(first.warehouse.as_deref(), Some("主仓"));
    assert_eq!(first.wh_id, Some(1));
    assert_eq!(first.wms_co_id, Some(0));
    assert_eq!(first.kind.as_deref(), Some("盘点"));
    assert_eq!(first.creator_name.as_deref(), Some("张三"));
    assert_eq!(first.f_status.as_deref(), Some("WaitConfirm"));
    assert_eq!(first.lock_wh_id, None);
    assert_eq!(first.labels, vec!["月度".to_string(), "复盘".to_string()]);
    let modified = NaiveDate::from_ymd_opt(2023, 1, 3).unwrap().and_hms_milli_opt(9, 43, 26, 487).unwrap();
    assert_eq!(first.modified, Some(modified));
    assert_eq!(first.io_date, NaiveDate::from_ymd_opt(2023, 1, 3).unwrap().and_hms_opt(0, 0, 0));
    assert_eq!(first.sns, vec![SerialNumber { sku_id: "SKU-A".into(), sn: "SN0001".into() }]);
    assert!(first.batchs.is_empty());

    let line = &first.items[0];
    assert_eq!(line.ioi_id, Some(5001));
    assert_eq!(line.r_qty, Some(decimal("12.50")));
    assert_eq!(line.r_qty.unwrap().scale(), 2, "the number text 12.50 keeps its scale");
    assert_eq!(line.qty, Some(decimal("-0.25")));
    assert_eq!(line.properties_value.as_deref(), Some("红色"));

    let batched = &first.items[1];
    assert_eq!(batched.ioi_id, Some(5002));
    assert_eq!(batched.r_qty, Some(decimal("3")));
    assert_eq!(batched.qty, Some(decimal("1.10")));
    assert_eq!(batched.batch_id.as_deref(), Some("LOT-1"));
    assert_eq!(batched.product_date, NaiveDate::from_ymd_opt(2022, 12, 1));
    assert_eq!(batched.expiration_date, NaiveDate::from_ymd_opt(2024, 12, 1));
    assert_eq!(batched.supplier_id.as_deref(), Some("77"));
}

#[test]
fn fixture_page_string_shapes() {
    let page = page(include_str!("../../fixtures/count_query_page.json")).unwrap();
    let second = &page.sheets[1];
    assert_eq!(second.io_id, 1002);
    assert_eq!(second.wh_id, Some(2));
    assert_eq!(second.wms_co_id, Some(10001));
    assert_eq!(second.labels, vec!["退货".to_string(), "抽盘".to_string()]);
    assert_eq!(second.remark, None);
    assert_eq!(second.batchs.len(), 2);
    assert_eq!(second.batchs[0].batch_no, "B-1");
    assert_eq!(second.batchs[0].qty, Some(decimal("4.5")));
    assert_eq!(second.batchs[0].supplier_name.as_deref(), Some("供应商一"));
    assert_eq!(second.batchs[1].qty, Some(decimal("2.5")));
    assert_eq!(second.batchs[1].product_date, None);
}

#[test]
fn datas_empty_null_or_missing() {
    for datas in [r#","datas":[]"#, r#","datas":null"#, ""] {
        let body = format!(r#"{{"code":0,"msg":"ok","data":{{"page_index":1,"page_size":50,"has_next":false{datas}}}}}"#);
        let page = page(&body).unwrap();
        assert!(page.sheets.is_empty(), "{body}");
        assert!(!page.has_next, "{body}");
    }
}

#[test]
fn data_null_is_empty_last_page() {
    let page = page(r#"{"code":0,"msg":"ok","data":null}"#).unwrap();
    assert_eq!(page, SheetPage::default());
}

#[test]
fn has_next_as_text_or_number() {
    let with = |flag: &str| page(&format!(r#"{{"code":0,"data":{{"has_next":{flag},"datas":[]}}}}"#)).unwrap().has_next;
    assert!(with("\"true\""));
    assert!(with("1"));
    assert!(!with("\"false\""));
    assert!(!with("0"));
}

#[test]
fn has_next_inferred_from_counts() {
    let more = page(r#"{"code":0,"data":{"page_index":1,"page_count":3,"datas":[]}}"#).unwrap();
    assert!(more.has_next);
    let last = page(r#"{"code":0,"data":{"page_index":3,"page_count":3,"datas":[]}}"#).unwrap();
    assert!(!last.has_next);
    let by_total = page(r#"{"code":0,"data":{"page_index":1,"page_size":2,"data_count":3,"datas":[]}}"#).unwrap();
    assert!(by_total.has_next);
    let unknown = page(r#"{"code":0,"data":{"datas":[]}}"#).unwrap();
    assert!(!unknown.has_next);
}

#[test]
fn has_next_inferred_from_full_page() {
    let one = r#"{"io_id":1,"status":"Confirmed"}"#;
    let body = format!(r#"{{"code":0,"data":{{"datas":[{one}]}}}}"#);
    let envelope = decode_envelope(&body).unwrap();
    assert!(decode_page(envelope.data, 1).unwrap().has_next);
    assert!(!decode_page(envelope.data, 2).unwrap().has_next);
}

#[test]
fn envelope_reads_error_code() {
    let envelope = decode_envelope(r#"{"code":199,"msg":"调用频率过高","data":null}"#).unwrap();
    assert_eq!(envelope.code, 199);
    assert_eq!(envelope.msg, "调用频率过高");
    assert!(envelope.data.is_none());

    let as_text = decode_envelope(r#"{"code":"10","msg":"sign error"}"#).unwrap();
    assert_eq!(as_text.code, 10);
}

#[test]
fn envelope_rejects_bad_bodies() {
    assert!(matches!(decode_envelope("<html>502 Bad Gateway</html>"), Err(DecodeError::Body(_))));
    assert!(matches!(decode_envelope("[1,2]"), Err(DecodeError::Body(_))));
    assert!(matches!(decode_envelope(""), Err(DecodeError::Body(_))));
    assert_eq!(field_of(decode_envelope(r#"{"msg":"no code"}"#).unwrap_err()), "response.code");
}

#[test]
fn io_id_missing_names_field() {
    let error = sheet(r#"{"status":"Confirmed","items":[]}"#).unwrap_err();
    assert_eq!(field_of(error.clone()), "datas[0].io_id");
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn io_id_not_numeric_names_value() {
    let error = sheet(r#"{"io_id":"IO-17","status":"Confirmed"}"#).unwrap_err();
    assert!(error.to_string().contains("IO-17"), "{error}");
    assert_eq!(field_of(error), "datas[0].io_id");
}

#[test]
fn io_id_large_as_text() {
    let decoded = sheet(r#"{"io_id":"9007199254740993","status":"Confirmed"}"#).unwrap();
    assert_eq!(decoded.io_id, 9_007_199_254_740_993);
}

#[test]
fn status_missing_is_error() {
    assert_eq!(field_of(sheet(r#"{"io_id":5}"#).unwrap_err()), "datas[0] (io_id 5).status");
}

#[test]
fn item_quantity_not_numeric_names_path() {
    let error = sheet(r#"{"io_id":5,"status":"Confirmed","items":[{"sku_id":"A","r_qty":"abc"}]}"#).unwrap_err();
    assert_eq!(field_of(error.clone()), "datas[0] (io_id 5).items[0].r_qty");
    assert!(error.to_string().contains("abc"));
}

#[test]
fn item_without_sku_is_error() {
    let error = sheet(r#"{"io_id":5,"status":"Confirmed","items":[{"r_qty":1}]}"#).unwrap_err();
    assert_eq!(field_of(error), "datas[0] (io_id 5).items[0].sku_id");
}

#[test]
fn quantities_keep_exact_digits() {
    let decoded = sheet(
        r#"{"io_id":5,"status":"Confirmed","items":[
            {"sku_id":"A","r_qty":0.1,"qty":123456789012.3456789},
            {"sku_id":"B","r_qty":"0.30","qty":1e2},
            {"sku_id":"C","r_qty":0,"qty":-0.01},
            {"sku_id":"D","r_qty":"","qty":null}
        ]}"#,
    )
    .unwrap();
    assert_eq!(decoded.items[0].r_qty, Some(decimal("0.1")));
    assert_eq!(decoded.items[0].qty.unwrap().to_string(), "123456789012.3456789");
    assert_eq!(decoded.items[1].r_qty.unwrap().to_string(), "0.30");
    assert_eq!(decoded.items[1].qty, Some(decimal("100")));
    assert_eq!(decoded.items[2].r_qty, Some(Decimal::ZERO));
    assert_eq!(decoded.items[2].qty, Some(decimal("-0.01")));
    assert_eq!(decoded.items[3].r_qty, None);
    assert_eq!(decoded.items[3].qty, None);
}

#[test]
fn times_with_and_without_milliseconds() {
    let decoded = sheet(r#"{"io_id":5,"status":"Confirmed","io_date":"2023-01-03","modified":"2023-01-03T09:43:26"}"#).unwrap();
    assert_eq!(decoded.io_date, NaiveDate::from_ymd_opt(2023, 1, 3).unwrap().and_hms_opt(0, 0, 0));
    assert_eq!(decoded.modified, NaiveDate::from_ymd_opt(2023, 1, 3).unwrap().and_hms_opt(9, 43, 26));

    let empty = sheet(r#"{"io_id":5,"status":"Confirmed","io_date":"","modified":null}"#).unwrap();
    assert_eq!(empty.io_date, None);
    assert_eq!(empty.modified, None);
}

#[test]
fn bad_time_names_field_and_format() {
    let error = sheet(r#"{"io_id":5,"status":"Confirmed","modified":"yesterday"}"#).unwrap_err();
    assert!(error.to_string().contains("yyyy-MM-dd HH:mm:ss"), "{error}");
    assert_eq!(field_of(error), "datas[0] (io_id 5).modified");
}

#[test]
fn labels_every_shape() {
    let labels = |value: &str| sheet(&format!(r#"{{"io_id":5,"status":"Confirmed","labels":{value}}}"#)).unwrap().labels;
    assert_eq!(labels(r#""a, b,,c""#), vec!["a", "b", "c"]);
    assert_eq!(labels(r#""甲，乙""#), vec!["甲", "乙"]);
    assert_eq!(labels(r#"["a","b"]"#), vec!["a", "b"]);
    assert_eq!(labels(r#""""#), Vec::<String>::new());
    assert_eq!(labels("null"), Vec::<String>::new());
    assert!(sheet(r#"{"io_id":5,"status":"Confirmed","labels":[1,2]}"#).is_err());
}

#[test]
fn missing_lists_are_empty() {
    let decoded = sheet(r#"{"io_id":5,"status":"WaitConfirm","items":null}"#).unwrap();
    assert!(decoded.items.is_empty());
    assert!(decoded.batchs.is_empty());
    assert!(decoded.sns.is_empty());
    assert!(decoded.labels.is_empty());
    assert_eq!(decoded.warehouse, None);
}

#[test]
fn items_not_a_list_is_error() {
    let error = sheet(r#"{"io_id":5,"status":"Confirmed","items":{"sku_id":"A"}}"#).unwrap_err();
    assert_eq!(field_of(error), "datas[0] (io_id 5).items");
}

#[test]
fn batch_without_number_is_error() {
    let error = sheet(r#"{"io_id":5,"status":"Confirmed","batchs":[{"sku_id":"A","qty":1}]}"#).unwrap_err();
    assert_eq!(field_of(error), "datas[0] (io_id 5).batchs[0].batch_no");
}

#[test]
fn sheet_not_an_object_is_error() {
    let body = r#"{"code":0,"data":{"has_next":false,"datas":[{"io_id":1,"status":"Confirmed"}, 42]}}"#;
    let error = page(body).unwrap_err();
    assert_eq!(field_of(error), "datas[1]");
}

#[test]
fn fractional_integer_is_error() {
    let error = sheet(r#"{"io_id":5,"status":"Confirmed","wh_id":1.5}"#).unwrap_err();
    assert_eq!(field_of(error), "datas[0] (io_id 5).wh_id");
}

#[test]
fn integral_decimal_reads_as_integer() {
    assert_eq!(sheet(r#"{"io_id":5.0,"status":"Confirmed","wh_id":"4"}"#).unwrap().wh_id, Some(4));
}

#[test]
fn legacy_flat_page_decodes() {
    let body = r#"{"code":0,"issuccess":true,"msg":null,"page_index":1,"page_size":50,"has_next":false,
        "datas":[{"io_id":"7","status":"Confirmed","modified":"2024-03-01 08:00:00","items":[]}]}"#;
    let response = decode_legacy(body, 50).unwrap();
    assert_eq!(response.code, 0);
    let page = response.page.unwrap();
    assert!(!page.has_next);
    assert_eq!(page.sheets.len(), 1);
    assert_eq!(page.sheets[0].io_id, 7);
}

#[test]
fn legacy_error_has_no_page() {
    let response = decode_legacy(r#"{"code":120,"issuccess":false,"msg":"签名错误"}"#, 50).unwrap();
    assert_eq!(response.code, 120);
    assert_eq!(response.msg, "签名错误");
    assert!(response.page.is_none());

    let unsuccessful = decode_legacy(r#"{"code":0,"issuccess":false,"msg":"失败"}"#, 50).unwrap();
    assert_ne!(unsuccessful.code, 0, "issuccess false must not read as success");
    assert!(unsuccessful.page.is_none());
}

#[test]
fn legacy_missing_code_rejected() {
    let error = decode_legacy(r#"{"issuccess":false}"#, 50).unwrap_err();
    assert!(error.to_string().contains("response.code"), "{error}");
}
