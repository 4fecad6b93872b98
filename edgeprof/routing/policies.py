"""The policies a replay evaluates, as data, and what each does with one request. Pure.

device-only      the device answers everything
cloud-only       the cloud answers everything
cascade          the device answers; a request whose signal is past the threshold, whose
                 format check failed, or that failed outright, goes to the cloud as well,
                 and the cloud's answer is used
route-by-prompt  a rule on the prompt alone picks one side before anything is generated:
                 the cloud for prompts longer than N input tokens, or for named kinds
oracle           the cheapest side that passes, known in advance: the device where it
                 passes, else the cloud where it passes, else the device (an upper bound)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgeprof.routing.cases import DeviceAnswer, PromptCase
from edgeprof.routing.signals import SURER, Signal, escalates, unsure_sign

PolicyName = Literal["device-only", "cloud-only", "cascade", "route-by-prompt", "oracle"]
# What happened to one request: answered on the device, sent to the cloud instead, or
# answered on the device and then again in the cloud.
Route = Literal["device", "cloud", "escalated"]


@dataclass(frozen=True)
class DeviceOnly:
    name: PolicyName = field(default="device-only", init=False)


@dataclass(frozen=True)
class CloudOnly:
    name: PolicyName = field(default="cloud-only", init=False)


@dataclass(frozen=True)
class Cascade:
    signal: Signal | None = None  # None: no signal, the format check alone
    threshold: float | None = None  # None: the signal escalates nothing (or everything)
    on_check: bool = False  # a failed format check escalates
    escalate_all: bool = False  # past every threshold: every request is escalated
    name: PolicyName = field(default="cascade", init=False)


@dataclass(frozen=True)
class ByInputLength:
    max_device_input_tokens: float | None  # longer prompts go to the cloud; None: none do
    name: PolicyName = field(default="route-by-prompt", init=False)


@dataclass(frozen=True)
class ByKind:
    cloud_kinds: tuple[str, ...]  # sorted; "" stands for prompts without a kind
    name: PolicyName = field(default="route-by-prompt", init=False)


@dataclass(frozen=True)
class Oracle:
    name: PolicyName = field(default="oracle", init=False)


Policy = DeviceOnly | CloudOnly | Cascade | ByInputLength | ByKind | Oracle


def route(policy: Policy, case: PromptCase, answer: DeviceAnswer) -> Route:
    """Where `policy` sends one replayed request: `answer` is the device's answer to it (what
    a cascade reads its signals from; a prompt rule reads only the prompt)."""
    if isinstance(policy, DeviceOnly):
        return "device"
    if isinstance(policy, CloudOnly):
        return "cloud"
    if isinstance(policy, Cascade):
        return "escalated" if cascade_escalates(policy, answer) else "device"
    if isinstance(policy, ByInputLength):
        limit = policy.max_device_input_tokens
        if limit is None:
            return "device"
        # 0: every prompt, also a failed request's that recorded no input tokens
        return "cloud" if limit <= 0 or answer.input_tokens > limit else "device"
    if isinstance(policy, ByKind):
        return "cloud" if (case.kind or "") in policy.cloud_kinds else "device"
    # the oracle: the device where it passes, else the cloud where that passes
    return "device" if answer.passed or case.cloud.passed <= 0 else "cloud"


def cascade_escalates(policy: Cascade, answer: DeviceAnswer) -> bool:
    if policy.escalate_all or answer.failed or (policy.on_check and answer.check_failed):
        return True
    if policy.signal is None or policy.threshold is None:
        return False
    value = answer.signal(policy.signal)
    # A request without the figure is not escalated by it (a replay only tries a signal that
    # every answer carries; load.py says which).
    return value is not None and escalates(value, policy.threshold, SURER[policy.signal])


def describe(policy: Policy) -> str:
    """The rule in words, as the table shows it."""
    if isinstance(policy, Cascade):
        if policy.escalate_all:
            return "always"
        parts = ["format check failed"] if policy.on_check else []
        if policy.signal is not None:
            if policy.threshold is None:
                parts.append(f"{policy.signal}: never")
            else:
                sign = unsure_sign(SURER[policy.signal])
                parts.append(f"{policy.signal} {sign} {policy.threshold:.4g}")
        return " or ".join(parts) or "never"
    if isinstance(policy, ByInputLength):
        limit = policy.max_device_input_tokens
        if limit is None:
            return "cloud: none"
        return "cloud: every prompt" if limit <= 0 else f"cloud when input > {limit:g} tokens"
    if isinstance(policy, ByKind):
        kinds = ", ".join(k or "(no kind)" for k in policy.cloud_kinds)
        return f"cloud: {kinds}" if kinds else "cloud: no kind"
    if isinstance(policy, Oracle):
        return "device where it passes, else the cloud"
    return ""
