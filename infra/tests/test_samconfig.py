"""samconfig.toml overrides name real template parameters and respect their constraints."""

from __future__ import annotations

import re
import tomllib

import pytest

from samcli.cli.types import CfnParameterOverridesType

from translate import INFRA_DIR, load_sam_template

ENVIRONMENTS = ("dev", "prod")


def overrides_of(environment: str) -> dict[str, str]:
    config = tomllib.loads((INFRA_DIR / "samconfig.toml").read_text(encoding="utf-8"))
    raw = config[environment]["global"]["parameters"]["parameter_overrides"]
    # The SAM CLI parses the list with the same type, so quoting mistakes show up here.
    return CfnParameterOverridesType().convert(tuple(raw), None, None)


def constraint_violations(name: str, value: str, parameter: dict) -> list[str]:
    violations = []
    if "AllowedValues" in parameter and value not in [str(allowed) for allowed in parameter["AllowedValues"]]:
        violations.append(f"{name}={value!r} is not one of {parameter['AllowedValues']}")
    if "AllowedPattern" in parameter and not re.fullmatch(parameter["AllowedPattern"], value):
        violations.append(f"{name}={value!r} does not match {parameter['AllowedPattern']}")
    if parameter["Type"] == "Number":
        number = float(value)
        if "MinValue" in parameter and number < parameter["MinValue"]:
            violations.append(f"{name}={value} is below {parameter['MinValue']}")
        if "MaxValue" in parameter and number > parameter["MaxValue"]:
            violations.append(f"{name}={value} is above {parameter['MaxValue']}")
    return violations


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_match_template(environment: str) -> None:
    parameters = load_sam_template()["Parameters"]
    overrides = overrides_of(environment)

    assert set(overrides) - set(parameters) == set(), "overrides name unknown parameters"
    assert set(parameters) - set(overrides) == set(), "every parameter is set explicitly per environment"
    for name, value in overrides.items():
        assert constraint_violations(name, value, parameters[name]) == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_deploy_settings(environment: str) -> None:
    config = tomllib.loads((INFRA_DIR / "samconfig.toml").read_text(encoding="utf-8"))
    deploy = config[environment]["deploy"]["parameters"]

    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert config[environment]["build"]["parameters"]["beta_features"] is True


def test_constraint_check_rejects_bad_value() -> None:
    parameters = load_sam_template()["Parameters"]

    assert constraint_violations("WriterTimeout", "240", parameters["WriterTimeout"]) != []
    assert constraint_violations("WriterMaxConcurrency", "1", parameters["WriterMaxConcurrency"]) != []
    assert constraint_violations("ConfigParameterName", "countsync/config", parameters["ConfigParameterName"]) != []
