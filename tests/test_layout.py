"""The source root must stay a plain folder: a package named `platform` shadows the stdlib."""
import platform

from labformer import CONF_DIR

REPO = CONF_DIR.parent


def test_platform_folder_is_not_a_package():
    assert not (REPO / "platform" / "__init__.py").exists(), (
        "platform/__init__.py must never exist: it shadows the stdlib module `platform` and breaks `import torch`")


def test_stdlib_platform_module_is_the_real_one():
    assert callable(platform.system) and platform.system()
