import edgeprof


def test_every_public_name_resolves():
    for name in edgeprof.__all__:
        assert getattr(edgeprof, name) is not None, name


def test_unknown_name_raises_attribute_error():
    try:
        edgeprof.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")
