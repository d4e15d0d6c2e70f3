"""The prop_amm source rules (docs/recipes.md, "prop_amm"): safe Rust only, the challenge's
required items, no macros or items that reach outside the file; comments and literals never
trip a rule; every problem names its item."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from recipes.prop_amm.operations_light import inline_problems
from recipes.prop_amm.source_check import MAX_SOURCE_BYTES, check_source, tokenize

STRATEGY = Path(__file__).parents[1] / "integration" / "prop_amm_strategies"
GOOD = (STRATEGY / "constant_product_5pct.rs").read_text()

MINIMAL = """
const NAME: &str = "n";
const MODEL_USED: &'static str = "None";
pub fn get_model_used() -> &'static str { MODEL_USED }
pub fn compute_swap(data: &[u8]) -> u64 { data.len() as u64 }
"""


def items(source: str) -> list[str]:
    return [p.item for p in check_source(source)[0]]


def test_the_test_strategy_passes_and_declares_its_metadata() -> None:
    problems, summary = check_source(GOOD)
    assert problems == []
    assert summary.name == "Five percent constant product"
    assert summary.model_used == "None"
    assert summary.has_after_swap is False


def test_after_swap_is_optional_and_seen() -> None:
    source = MINIMAL + "pub fn after_swap(_d: &[u8], _s: &mut [u8]) {}\n"
    problems, summary = check_source(source)
    assert problems == [] and summary.has_after_swap


@pytest.mark.parametrize(
    ("snippet", "item"),
    [
        ("unsafe fn f() {}", "unsafe"),
        ("fn f() { unsafe { } }", "unsafe"),
        ("fn f() { let _ = r#unsafe; }", "unsafe"),
        ('const X: &str = include_str!("secret");', "include_str!"),
        ('fn f() { include!("x.rs"); }', "include!"),
        ('const B: &[u8] = include_bytes!("/etc/passwd");', "include_bytes!"),
        ('const H: &str = env!("HOME");', "env!"),
        ('const H: Option<&str> = option_env!("HOME");', "option_env!"),
        ("extern crate std as s;", "extern crate"),
        ("mod helpers;", "mod helpers;"),
        ('fn f() { core::arch::asm!("nop"); }', "asm!"),
    ],
)
def test_each_blocked_construct_is_named(snippet: str, item: str) -> None:
    assert items(MINIMAL + snippet + "\n") == [item]


def test_comments_and_literals_never_trip_a_rule() -> None:
    source = (
        MINIMAL
        + '// unsafe include!("x") extern crate y; mod z;\n'
        + '/* nested /* unsafe */ env!("A") */\n'
        + 'const S: &str = "unsafe include!(x) mod y;";\n'
        + 'const R: &str = r#"unsafe "quoted" env!"#;\n'
        + "const C: char = '\\'';\n"
        + "fn lifetimes<'a>(x: &'a [u8]) -> &'a [u8] { x }\n"
        + "mod inline { pub fn ok() {} }\n"
    )
    assert check_source(source)[0] == []


@pytest.mark.parametrize(
    ("source", "item", "needle"),
    [
        (MINIMAL.replace('const NAME: &str = "n";', ""), "NAME", "const NAME"),
        (MINIMAL.replace('"None"', '"  "'), "MODEL_USED", "must not be empty"),
        (MINIMAL.replace('const NAME: &str = "n";', "const NAME: u8 = 1;"), "NAME", "&str"),
        (
            MINIMAL.replace('const NAME: &str = "n";', 'const NAME: &str = concat!("a");'),
            "NAME",
            "literal",
        ),
        (MINIMAL.replace("pub fn compute_swap", "pub fn quote"), "compute_swap", "compute_swap"),
        (
            MINIMAL.replace("pub fn get_model_used", "pub fn model"),
            "get_model_used",
            "get_model_used",
        ),
    ],
)
def test_required_items_are_named_when_missing_or_malformed(
    source: str, item: str, needle: str
) -> None:
    problems = check_source(source)[0]
    assert [p.item for p in problems] == [item]
    assert needle in problems[0].message


def test_required_items_must_be_at_the_top_level() -> None:
    nested = MINIMAL.replace(
        "pub fn compute_swap(data: &[u8]) -> u64 { data.len() as u64 }",
        "mod inner { pub fn compute_swap(data: &[u8]) -> u64 { data.len() as u64 } }",
    )
    assert items(nested) == ["compute_swap"]


def test_every_problem_is_reported_with_its_line() -> None:
    source = "unsafe fn a() {}\nmod b;\n"
    problems = check_source(source)[0]
    assert [p.item for p in problems] == [
        "unsafe",
        "mod b;",
        "NAME",
        "MODEL_USED",
        "get_model_used",
        "compute_swap",
    ]
    assert problems[0].message.startswith("line 1:") and problems[1].message.startswith("line 2:")


def test_unreadable_text_and_oversize_sources_are_problems_not_exceptions() -> None:
    assert items(MINIMAL + "/* never closed") == ["source"]
    assert items(MINIMAL + 'const S: &str = "never closed;') == ["source"]
    assert items(MINIMAL + "fn f() {") == ["source"]
    assert items("//" + "x" * MAX_SOURCE_BYTES) == ["source"]


def test_tokens_keep_string_values_and_lines() -> None:
    tokens = tokenize('let s = "a\\nb\\x41\\u{1F600}";\nlet t = b"x";')
    strings = [t for t in tokens if t.kind == "str"]
    assert strings[0].value == "a\nbA\U0001f600" and strings[0].line == 1
    assert strings[1].line == 2


def test_inline_sources_are_checked_at_submit() -> None:
    good = base64.b64encode(GOOD.encode()).decode()
    assert inline_problems(good) == []
    bad = base64.b64encode(b"unsafe fn x() {}").decode()
    ((field, message),) = inline_problems(bad)
    assert field == "rs_source_b64" and message.startswith("unsafe: line 1")
    assert inline_problems("not base64!") == [("rs_source_b64", "not valid base64 of UTF-8 text")]
