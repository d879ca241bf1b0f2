import pytest

from bench.config import RunConfig
from bench.registry import UsageError


def test_ids_are_pinned():
    # A change to these literals renames every finished run: do it only on purpose.
    assert RunConfig().id == "44136fa355b3"
    assert RunConfig(method="random", sparsity=0.98).id == "415d9cd56cf6"
    assert RunConfig(method="tg-oneshot", options=(("retrain", "ft"),), sparsity=0.5).id == \
        "c3c836d113e3"


def test_defaults_are_left_out_of_the_id():
    assert RunConfig().canonical() == {}
    assert RunConfig(sparsity=0.9).id == RunConfig().id
    assert RunConfig(seed=1).canonical() == {"seed": 1}
    # an option at its default is the same cell as no option
    assert RunConfig(method="tg-oneshot", options=(("retrain", "kd"),)).id == \
        RunConfig(method="tg-oneshot").id
    assert RunConfig(method="tg-oneshot", options=(("retrain", "ft"),)).id != \
        RunConfig(method="tg-oneshot").id


def test_int_and_float_spellings_are_one_cell():
    assert RunConfig(sparsity=0).id == RunConfig(sparsity=0.0).id
    assert RunConfig(alpha=1).alpha == 1.0


@pytest.mark.parametrize("field,value,needle", [
    ("sparsity", 1.0, "[0, 1)"), ("sparsity", -0.1, "[0, 1)"), ("sparsity", float("nan"), "[0, 1)"),
    ("dense_epochs", -1, ">= 0"), ("batch_size", 0, ">= 1"), ("temperature", 0.0, "> 0"),
    ("alpha", 1.5, "[0, 1]"), ("lr", 0.0, "> 0"), ("schedule", "linear", "cosine"),
    ("seed", 1.5, "integer"),
])
def test_invalid_values_are_rejected_with_the_value_named(field, value, needle):
    with pytest.raises(UsageError) as err:
        RunConfig(**{field: value})
    assert field in str(err.value) and needle in str(err.value)


def test_unknown_names_list_valid_ones():
    with pytest.raises(UsageError, match="unknown method 'nosuch'; valid: .*magnitude.*random"):
        RunConfig(method="nosuch")
    with pytest.raises(UsageError, match="unknown dataset 'mnist'; valid: .*cifar10.*digits"):
        RunConfig(dataset="mnist")
    with pytest.raises(UsageError, match="unknown model"):
        RunConfig(model="vgg99")


def test_options_are_validated_by_the_method():
    with pytest.raises(UsageError, match="unknown option 'bogus' for method 'tg-oneshot'"):
        RunConfig(method="tg-oneshot", options=(("bogus", 1),))
    with pytest.raises(UsageError, match="retrain='sgd' is invalid; valid: kd, ft"):
        RunConfig(method="tg-oneshot", options=(("retrain", "sgd"),))
    cfg = RunConfig(method="tg-oneshot", options=(("beta", "0.8"),))  # strings coerce
    assert cfg.option_dict["beta"] == 0.8


def test_method_requirements():
    with pytest.raises(UsageError, match="dense_epochs=0 is invalid for method 'tg-oneshot'"):
        RunConfig(method="tg-oneshot", dense_epochs=0)


def test_round_trip_through_dict():
    cfg = RunConfig(method="tg-oneshot", sparsity=0.95, temperature=4.0, seed=2,
                    options=(("score", "grad"),))
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.id == cfg.id
    with pytest.raises(UsageError, match="unknown config field"):
        RunConfig.from_dict({"sparsty": 0.5})


def test_dataset_default_temperature():
    assert RunConfig(dataset="cifar10").resolved_temperature() == 3.0
    assert RunConfig(dataset="tinyimagenet").resolved_temperature() == 5.0
    assert RunConfig(dataset="tinyimagenet", temperature=2).resolved_temperature() == 2.0


def test_every_field_says_what_it_means():
    """Each RunConfig field carries one line of help in its metadata (issue 31, section 3)."""
    from dataclasses import fields

    for f in fields(RunConfig):
        text = f.metadata.get("help", "")
        assert text and "\n" not in text and len(text) < 100, f.name


def test_fields_lists_every_field_with_type_default_and_meaning(capsys):
    from dataclasses import fields

    from bench.run import main

    assert main(["--fields"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out[4:]}
    assert list(rows) == [f.name for f in fields(RunConfig)]
    for f in fields(RunConfig):
        assert f.metadata["help"] in rows[f.name] and str(f.type) in rows[f.name]
    assert rows["sparse_epochs"].split()[1:3] == ["int", "10"]
    assert rows["temperature"].split()[1:5] == ["float", "|", "None", "(unset)"]


def test_an_unknown_set_field_is_one_line_naming_the_valid_ones(capsys):
    from bench.run import main

    assert main(["--set", "nosuch=1", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown config field(s) 'nosuch'; valid: ")
    assert "sparse_epochs" in err[0]


def test_grids_lists_every_named_grid_with_its_size_and_description(capsys, tmp_path,
                                                                   monkeypatch):
    from bench import catalog, plugins
    from bench.run import main

    plugins.load_builtins()
    monkeypatch.setattr(catalog.GRIDS, "_items", dict(catalog.GRIDS._items))  # undo the plugin's
    plugin = tmp_path / "my_grid.py"
    plugin.write_text("from bench.plan.grids import Grid, register_grid\n"
                      "register_grid(Grid(name='my-grid', description='two digits cells',\n"
                      "    methods=('magnitude',), datasets=('digits',), sparsities=(0.5, 0.9)))\n")
    assert main(["--grids", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if not line.startswith(" ")]
    assert [h.split()[0] for h in heads] == sorted(catalog.GRIDS.names())
    assert "quick  (12 cells)" in heads and "my-grid  (2 cells)" in heads
    assert out.split("my-grid  (2 cells)\n")[1].splitlines()[0] == "    two digits cells"
