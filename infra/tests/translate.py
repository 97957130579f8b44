"""Offline translation of the SAM template to plain CloudFormation.

`sam validate` needs AWS credentials, so this module calls the SAM translator (the
`samtranslator` package that aws-sam-cli installs) directly. Functions get a placeholder S3
`CodeUri` because the translator only accepts S3 locations, and the managed policy map is
empty so no IAM call is made.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

INFRA_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = INFRA_DIR / "template.yaml"
OUTPUT_PATH = INFRA_DIR / "build" / "template.cfn.json"
DEFAULT_REGION = "us-east-1"
PLACEHOLDER_CODE_URI = "s3://countsync-placeholder-bucket/placeholder.zip"


class EmptyManagedPolicyLoader(ManagedPolicyLoader):
    """Managed policy map with no entries, so the translator never calls IAM."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)

    def load(self) -> dict[str, str]:
        return {}


def load_sam_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse the SAM template, keeping CloudFormation short-form tags as intrinsics."""
    return json.loads(json.dumps(yaml_parse(path.read_text(encoding="utf-8"))))


def translate(sam_template: dict[str, Any], region: str = DEFAULT_REGION) -> dict[str, Any]:
    """Translate a parsed SAM template to CloudFormation without touching AWS.

    The translator reads the region from the environment to fill pseudo parameters and pick
    the partition of the ARNs it writes.
    """
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    template = copy.deepcopy(sam_template)
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = PLACEHOLDER_CODE_URI
    translated = transform(template, {}, EmptyManagedPolicyLoader())
    return json.loads(json.dumps(translated))


def main() -> int:
    translated = translate(load_sam_template())
    OUTPUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT_PATH.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
