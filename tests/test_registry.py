"""The registry's contract: unique names, close-match errors, task checks, None dropping."""
import pytest
import torch.nn as nn

from labformer import registry
from labformer.errors import UserError
from labformer.utils.arguments import check_arguments


def test_duplicate_name_is_an_error(registry_snapshot):
    registry.register("dup_probe", task="vision", kind="probe")(lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("dup_probe", task="vision", kind="probe")(lambda: None)


def test_unknown_model_lists_close_matches_and_valid_names():
    with pytest.raises(UserError) as e:
        registry.get("vit_tinyy", task="vision")
    msg = str(e.value)
    assert "Did you mean: vit_tiny" in msg and "t2t_vit_7" in msg


def test_model_of_another_task_says_which_tasks_it_serves(registry_snapshot):
    registry.register("graph_only_probe", task="graph", kind="backbone")(lambda: nn.Identity())
    with pytest.raises(UserError, match="serves: graph"):
        registry.get("graph_only_probe", task="vision")


def test_list_models_filters_by_task_and_pattern():
    vision = registry.list_models(task="vision")
    assert {"vit_nano", "vit_tiny", "pvt_v2_b0", "t2t_vit_7", "swin_tiny"} <= set(vision)
    assert registry.list_models(task="vision", pattern="vit_*") == [n for n in vision if n.startswith("vit_")]


def test_create_drops_none_so_defaults_apply():
    model = registry.create("vision", "vit_nano", in_chans=1, img_size=None, depth=None)
    assert model.patch_embed.img_size == (32, 32) and len(model.blocks) == 4


def test_every_registry_kind_is_listed():
    assert {"backbone", "dataset", "task", "logger"} <= set(registry.kinds())


def _builder(width: int = 4, rate: float = 0.1, name: str = "x", flag: bool = False, sizes: tuple = ()):
    return width


@pytest.mark.parametrize("kwargs, message", [
    ({"width": "abc"}, "model.width must be an integer, got 'abc'"),
    ({"width": 1.5}, "model.width must be an integer"),
    ({"flag": "yes"}, "model.flag must be true or false"),
    ({"rate": "fast"}, "model.rate must be a number"),
    ({"widht": 3}, "Did you mean model.width"),
])
def test_check_arguments_names_key_and_fix(kwargs, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("'", "'")):
        check_arguments(_builder, kwargs, where="model")


def test_check_arguments_accepts_good_values():
    check_arguments(_builder, {"width": 3, "rate": 1, "flag": True, "sizes": [1, 2]}, where="model")


def test_a_probe_registered_in_a_test_is_gone_afterwards(registry_snapshot):
    registry.register("gone_probe", task="vision", kind="backbone")(lambda: nn.Identity())
    assert "gone_probe" in registry.list_models()


def test_the_registry_holds_no_probe_of_another_test():
    assert "gone_probe" not in registry.list_models() and "probe" not in registry.kinds()


def test_variants_share_one_signature_and_fixed_arguments_are_not_settings(registry_snapshot):
    class Net(nn.Module):
        def __init__(self, depth: int = 2, width: int = 8, variant: str = "a") -> None:
            super().__init__()
            self.depth, self.width, self.variant = depth, width, variant

    registry.register("net_deep", task="vision", args=dict(depth=12), fixed=dict(variant="b"))(Net)
    entry = registry.get("net_deep")
    assert entry.defaults() == {"depth": 12, "width": 8}  # the variant's own over the class's; `variant` hidden
    net = registry.create("vision", "net_deep", width=4)
    assert (net.depth, net.width, net.variant) == (12, 4, "b")
    with pytest.raises(UserError, match="model.variant is fixed by backbone 'net_deep'"):
        registry.create("vision", "net_deep", variant="a")
    with pytest.raises(UserError, match="model.depth must be an integer"):
        registry.create("vision", "net_deep", depth="deep")
