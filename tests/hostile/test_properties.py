"""Property-based tests (hypothesis) of hostile input: every generated invocation of every `laclip` command ends
well (success, or one line of message), and hostile text in every user-settable text field of the stage
configs is refused in one line or reaches the container as typed without changing the rendered objects'
fields, arguments, environment, volumes or mount options (after kubelet expansion and shell parsing)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .cases_text import FRAGMENTS, TEMPLATES, check_field, stage_fields
from .cli_surface import run_one


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.data())
def test_every_invocation_ends_in_success_or_one_line(data):
    with tempfile.TemporaryDirectory(prefix="laclip-cli-") as tmp:
        run_one(lambda seq: data.draw(st.sampled_from(list(seq))), Path(tmp))


FIELDS = stage_fields()
hostile_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(min_size=1, max_size=3), min_size=1, max_size=4).map(
    "".join)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.sampled_from(FIELDS), st.data(), hostile_text)
def test_hostile_text_in_any_field_reaches_the_container_as_typed(field, data, text):
    stage, name = field
    template = data.draw(st.sampled_from(TEMPLATES.get(name.split(".")[-1] if name != "cluster.image" else name,
                                                       ["{}"])))
    with tempfile.TemporaryDirectory(prefix="laclip-render-") as tmp:
        check_field(stage, name, template, text, Path(tmp))
