"""The `kv` template filter: a JSON value (audit details, job parameters, reward details) as HTML."""

from apps.core.templatetags.r1 import KV_MAX_CHARS, KV_MAX_DEPTH, KV_MAX_ITEMS, kv


def test_an_object_is_a_definition_list_and_plain_values_read_as_words():
    html = kv({"fmt": "raw", "ok": True, "skipped": False, "model_version": None, "ratio": 0.5})
    assert html == ('<dl class="kv-list"><dt>fmt</dt><dd>raw</dd><dt>ok</dt><dd>yes</dd><dt>skipped</dt><dd>no</dd>'
                    "<dt>model_version</dt><dd>—</dd><dt>ratio</dt><dd>0.5</dd></dl>")


def test_nested_objects_nest_and_lists_of_objects_are_numbered():
    html = kv({"parts": [{"version": 1, "count": 10}, {"version": 2, "count": 5}], "tags": ["a", "b"]})
    assert html.startswith('<dl class="kv-list"><dt>parts</dt><dd><ol class="kv-items"><li><dl class="kv-list">')
    assert "<dt>version</dt><dd>2</dd><dt>count</dt><dd>5</dd>" in html and "<dt>tags</dt><dd>a, b</dd>" in html


def test_everything_is_escaped_keys_too():
    html = kv({"<script>": ["<img src=x>", {"a": "</dd>"}]})
    assert "<script>" not in html and "<img" not in html and "&lt;/dd&gt;" in html and "&lt;script&gt;" in html


def test_big_values_are_cut_and_say_how_much_is_left():
    html = kv({"ids": list(range(KV_MAX_ITEMS + 7)), "text": "x" * (KV_MAX_CHARS + 50)})
    assert f"{KV_MAX_ITEMS - 1}<span class=\"muted\">… and 7 more</span>" in html
    assert "x" * (KV_MAX_CHARS - 1) + "…" in html and "x" * KV_MAX_CHARS not in html
    many = kv({f"k{i}": i for i in range(KV_MAX_ITEMS + 3)})
    assert many.count("<dt>k") == KV_MAX_ITEMS and many.endswith('<dt class="muted">… and 3 more</dt></dl>')


def test_past_the_depth_limit_a_value_is_json_text_and_empty_ones_say_so():
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    html = kv(deep)
    assert html.count('<dl class="kv-list">') == KV_MAX_DEPTH and '{&quot;e&quot;: 1}' in html
    assert kv({}) == '<span class="muted">—</span>' and kv([]) == '<span class="muted">none</span>'
    assert kv(None) == "—" and kv("plain") == "plain"
