"""Suites with expectations: edgeprof's JSONL, promptfoo configs and OpenAI evals samples.

The promptfoo and evals files in tests/data/suites are written from what we know of those
projects' documented examples (promptfoo's getting-started `promptfooconfig.yaml`, evals'
`samples.jsonl` with `input` messages and `ideal`), not copied from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeprof.errors import UsageError
from edgeprof.grading.checks import grade
from edgeprof.measure.workload import load_suite, parse_suite, prompt_id, with_system_prompt

SUITES = Path(__file__).parent / "data" / "suites"


def test_jsonl_expectations_do_not_change_the_prompt_id() -> None:
    plain = parse_suite('{"prompt": "2+2?"}', suite="s", source="x")[0]
    line = {
        "prompt": "2+2?",
        "kind": "arithmetic",
        "reference": "4",
        "threshold": 0.5,
        "assert": [{"type": "number", "value": 4}],
    }
    graded = parse_suite(json.dumps(line), suite="s", source="x")[0]
    assert graded.id == plain.id == prompt_id(({"role": "user", "content": "2+2?"},))
    assert graded.kind == "arithmetic" and graded.reference == "4" and graded.threshold == 0.5
    assert graded.assertions[0].type == "number" and not plain.assertions
    assert graded.expectations_sha256() != plain.expectations_sha256()
    # A system prompt gives new ids but keeps what the answers must satisfy.
    moved = with_system_prompt([graded], "Be brief.")[0]
    assert moved.id != graded.id and moved.assertions == graded.assertions


def test_jsonl_bad_expectations_name_the_line() -> None:
    with pytest.raises(UsageError, match=r"x, line 2, assertion 0: unknown assertion type"):
        parse_suite('{"prompt": "a"}\n{"prompt": "b", "assert": [{"type": "nope"}]}', suite="s",
                    source="x")  # fmt: skip
    with pytest.raises(UsageError, match='x, line 1: "assert" must be a list'):
        parse_suite('{"prompt": "a", "assert": {"type": "equals"}}', suite="s", source="x")
    with pytest.raises(UsageError, match='"kind" must be a string'):
        parse_suite('{"prompt": "a", "kind": 3}', suite="s", source="x")


def test_promptfoo_config_reads_prompts_tests_vars_and_default_test() -> None:
    prompts = load_suite(str(SUITES / "promptfooconfig.yaml"))
    assert [p.name for p in prompts] == ["greeting", "thanks", "test 3", "test 3"]
    assert prompts[0].suite == "promptfooconfig"
    first = prompts[0].messages
    assert first == (
        {
            "role": "user",
            "content": 'Translate the following text to French: "Hello world". '
            "Reply with the translation only.",
        },
    )
    # defaultTest's assertion comes first on every test, then the test's own.
    assert [a.type for a in prompts[1].assertions] == [
        "not-icontains",
        "icontains-any",
        "max-words",
    ]
    # A var holding a list is one test per value.
    assert "Good night" in prompts[2].messages[0]["content"]
    assert "Good evening" in prompts[3].messages[0]["content"]
    assert prompts[3].kind == "translate"
    assert grade("Bonjour le monde", prompts[0].assertions[1]).passed
    assert not grade("Hallo Welt", prompts[0].assertions[1]).passed


def test_promptfoo_chat_prompts_and_vars_in_assertions(tmp_path: Path) -> None:
    chat = json.dumps([{"role": "system", "content": "Be terse."},
                       {"role": "user", "content": "Capital of {{country}}?"}])  # fmt: skip
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(
        f"prompts:\n  - '{chat}'\ntests:\n  - vars: {{country: Peru, city: Lima}}\n"
        "    assert:\n      - type: icontains\n        value: '{{city}}'\n"
    )
    (p,) = load_suite(str(path))
    assert p.messages[0]["role"] == "system" and p.messages[1]["content"] == "Capital of Peru?"
    assert p.assertions[0].value == "Lima"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("prompts: ['hi']\ntests:\n  - assert:\n      - type: javascript\n        value: '1'\n",
         "test 1, assert 1: promptfoo assertion type 'javascript' is not supported"),
        ("prompts: ['hi']\ntests:\n  - assert:\n      - type: similar\n        value: x\n",
         "'similar' is not supported"),
        ("prompts: ['hi {{name}}']\ntests:\n  - vars: {other: 1}\n", "uses {{name}}"),
        ("prompts: ['hi']\ntests: file://tests.csv\n", "tests must be a list"),
        ("prompts: []\n", "prompts must be a non-empty list"),
        ("prompts: ['hi'\n", "not valid YAML"),
        ("- just a list\n", "a promptfoo config is a mapping"),
        ("prompts: ['file://missing.txt']\n", "cannot read file://missing.txt"),
    ],
)  # fmt: skip
def test_promptfoo_misuse_is_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(body)
    with pytest.raises(UsageError) as e:
        load_suite(str(path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_openai_evals_samples_grade_by_mode() -> None:
    path = SUITES / "evals_samples.jsonl"
    includes = load_suite(str(path))  # recognised by its input/ideal lines
    assert len(includes) == 3 and includes[0].messages[0]["role"] == "system"
    assert includes[0].reference == "Paris"
    cap, planet, legs = (p.assertions[0] for p in includes)
    assert grade("The capital is Paris.", cap).passed and not grade("paris", cap).passed
    assert grade("jupiter", planet).passed and not grade("Saturn", planet).passed
    assert grade("8", legs).passed and not grade("six", legs).passed

    equals = [p.assertions[0] for p in load_suite(f"{path}#equals")]
    assert grade(" Paris\n", equals[0]).passed and not grade("Paris.", equals[0]).passed
    assert grade("Jupiter", equals[1]).passed and not grade("Jupiter!", equals[1]).passed

    fuzzy = [p.assertions[0] for p in load_suite(f"{path}#fuzzy")]
    assert grade("paris!", fuzzy[0]).passed and not grade("Lyon", fuzzy[0]).passed
    assert [p.id for p in load_suite(f"{path}#fuzzy")] == [p.id for p in includes]


def test_openai_evals_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="after # comes how to grade"):
        load_suite(f"{SUITES / 'evals_samples.jsonl'}#exact")
    path = tmp_path / "e.jsonl"
    path.write_text('{"input": "hi", "ideal": "x"}\n{"input": [], "ideal": "y"}\n')
    with pytest.raises(UsageError, match=r"e\.jsonl, line 2: \"input\" must be"):
        load_suite(str(path))
    path.write_text('{"input": "hi", "ideal": [1, null]}\n')
    with pytest.raises(UsageError, match='"ideal" must be a string'):
        load_suite(str(path))


@pytest.mark.parametrize(
    ("suite", "answers", "passed"),
    [
        ("promptfooconfig.yaml",
         {'Translate the following text to French: "Hello world". Reply with the translation '
          "only.": "Bonjour le monde",
          'Translate the following text to French: "Thank you". Reply with the translation '
          "only.": "As an AI, merci"},
         # greeting passes; thanks fails defaultTest's not-icontains; the two unknown fail
         1),
        ("evals_samples.jsonl",
         {"What is the capital of France?": "Paris.", "How many legs does a spider have?": "8",
          "What is the largest planet in the Solar System?": "Saturn"},
         2),
    ],
)  # fmt: skip
def test_run_and_grade_files_in_their_own_formats(
    tmp_path: Path, suite: str, answers: dict[str, str], passed: int
) -> None:
    import sqlite3

    import tests.canned  # noqa: F401 - registers the `canned` backend
    from tests.builders import cli

    table = tmp_path / "answers.json"
    table.write_text(json.dumps(answers))
    db = tmp_path / "p.db"
    done = cli("run", "--backend", "canned", "--set", f"answers={table}", "--prompts",
               SUITES / suite, "--db", db, "--repetitions", "1", "--warmup", "0",
               "--idle-seconds", "0", "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    report = json.loads(cli("report", db, "--json").stdout)
    q = report[0]["task_quality"]
    assert q["pass_rate"]["n"] == len(load_suite(str(SUITES / suite)))
    assert q["pass_rate"]["passed"] == passed
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT count(*) FROM grades").fetchone()[0]
    conn.close()
    assert n == sum(len(p.assertions) for p in load_suite(str(SUITES / suite)))
