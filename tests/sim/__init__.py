"""Test-only simulators, outside the installed package: launchctl (`launchctl_sim`, put first on
PATH by `launchctl_harness`) and the bare lark-oapi runner the benchmarks compare against
(`bare_sdk`). The demo's simulators (Feishu, LLM, CardKit) stay in `gateway_core/sim`."""
