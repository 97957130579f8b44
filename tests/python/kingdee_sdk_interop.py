#!/usr/bin/env python3
"""Drive the Kingdee simulator with the official Python SDK (kingdee-cdp-webapi-sdk).

Saves one STK_StockCountInput bill with BatchSave, reads it back with ExecuteBillQuery, then
checks that a client with a wrong app secret is rejected and stores nothing. Prints a JSON
summary and exits with status 1 on any mismatch, 2 when the SDK is not installed.
"""

import argparse
import json
import sys

try:
    from k3cloud_webapi_sdk.main import K3CloudApiSdk
except ImportError as error:  # pragma: no cover - depends on the environment
    print(json.dumps({"ok": False, "error": f"kingdee SDK not importable ({error}); run: pip install kingdee-cdp-webapi-sdk"}))
    sys.exit(2)

FORM_ID = "STK_StockCountInput"
SESSION_LOST = 1


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-url", required=True, help="simulator base URL ending with /k3cloud/")
    parser.add_argument("--acct-id", required=True, help="data-centre id (账套ID)")
    parser.add_argument("--username", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--bill-no", default="JST-PY-1", help="FBillNo of the bill to save")
    parser.add_argument("--material", default="SKU-001", help="material number the simulator knows")
    parser.add_argument("--stock", default="CK001", help="stock number the simulator knows")
    parser.add_argument("--org", default="100", help="stock organization number the simulator knows")
    return parser.parse_args()


def make_client(args, app_secret):
    client = K3CloudApiSdk(args.server_url)
    client.InitConfig(args.acct_id, args.username, args.app_id, app_secret, args.server_url, 2052, 0)
    return client


def bill_model(args):
    return {
        "FBillNo": args.bill_no,
        "FDate": "2024-05-01",
        "FBillTypeID": {"FNUMBER": "WLPDZY01_SYS"},
        "FStockOrgId": {"FNumber": args.org},
        "FNoteHead": "python sdk interop",
        "FBillEntry": [
            {
                "FMaterialId": {"FNumber": args.material},
                "FStockId": {"FNumber": args.stock},
                "FStockStatusId": {"FNumber": "KCZT01_SYS"},
                "FAcctQty": "10",
                "FCountQty": "12",
                "FGainQty": "2",
                "FLossQty": "0",
            }
        ],
    }


def save_data(args):
    return {
        "Model": [bill_model(args)],
        "BatchCount": 1,
        "IsVerifyBaseDataField": True,
        "ValidateRepeatJson": True,
        "NeedReturnFields": ["FID", "FBillNo"],
    }


def query_data(bill_no):
    return {
        "FormId": FORM_ID,
        "FieldKeys": "FID,FBillNo",
        "FilterString": "FBillNo='{}'".format(bill_no.replace("'", "''")),
        "TopRowCount": 0,
        "StartRow": 0,
        "Limit": 2,
    }


def response_status(body):
    return (body.get("Result") or {}).get("ResponseStatus") or {}


def main():
    args = parse_args()
    summary = {"ok": False, "checks": {}}
    checks = summary["checks"]

    client = make_client(args, args.app_secret)
    saved = response_status(json.loads(client.BatchSave(FORM_ID, save_data(args))))
    entities = saved.get("SuccessEntitys") or []
    checks["save_succeeded"] = saved.get("IsSuccess") is True
    checks["save_returned_number"] = len(entities) == 1 and entities[0].get("Number") == args.bill_no
    summary["fid"] = entities[0].get("Id") if entities else None

    rows = json.loads(client.ExecuteBillQuery(query_data(args.bill_no)))
    summary["rows"] = rows
    checks["query_found_bill"] = (
        isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], list) and rows[0][1] == args.bill_no
    )
    checks["query_fid_matches"] = bool(checks["query_found_bill"]) and str(rows[0][0]) == str(summary["fid"])

    wrong = make_client(args, args.app_secret[::-1] + "x")
    wrong_args = argparse.Namespace(**{**vars(args), "bill_no": args.bill_no + "-WRONG"})
    rejected = response_status(json.loads(wrong.BatchSave(FORM_ID, save_data(wrong_args))))
    checks["wrong_secret_rejected"] = rejected.get("IsSuccess") is False and rejected.get("MsgCode") == SESSION_LOST
    leaked = json.loads(client.ExecuteBillQuery(query_data(wrong_args.bill_no)))
    checks["wrong_secret_stored_nothing"] = leaked == []

    summary["ok"] = all(checks.values())
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
