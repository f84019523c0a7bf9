"""numpydoc's own validation over the public API (what CI runs on every docstring).

Every public object is validated with ``numpydoc.validate.validate``: each name of
``fasthess.__all__``, ``fasthess.theory.__all__`` and ``fasthess.distributed.__all__``
that is a function or a class, and every public method and property a fasthess class
defines. The examples themselves run as doctests (pytest's ``--doctest-modules``).

Checked: every numpydoc check (GL01-GL10 layout, SS01-SS06 summary, PR01-PR10
parameters, RT01-RT05 returns, YD01 yields, SA02-SA04 See Also format, EX01 examples)
except these two, left out on purpose:

* ES01 (no extended summary): a one-line summary is the whole story of many small
  functions and properties (``TwoLayerNet.n_in``); an extended summary there would
  only repeat it.
* SA01 (no See Also section): cross-references belong where they help; a mandatory
  section would fill most docstrings with boilerplate. The format of the See Also
  sections that exist is still checked (SA02-SA04).

Result dataclasses (``RESULT_CLASSES``) are built by the library, not by users: their
fields are documented under "Attributes", and PR01/PR02 (which read the constructor)
are replaced for them by a check that every field is documented there.
"""
import dataclasses
import inspect

import pytest

import fasthess as fh
from fasthess import distributed, theory

numpydoc_validate = pytest.importorskip("numpydoc.validate")
numpydoc_docscrape = pytest.importorskip("numpydoc.docscrape")

EXCLUDED_CHECKS = {"ES01", "SA01"}
RESULT_CLASSES = {"fasthess.Spectrum", "fasthess.RankResult", "fasthess.SpectralDensity",
                  "fasthess.GDResult", "fasthess.HessianBlocks", "fasthess.FlowResult",
                  "fasthess.OnlineODEResult", "fasthess.OnlineSGDResult"}
MODULES = {"fasthess": fh, "fasthess.theory": theory, "fasthess.distributed": distributed}

def _members(cls):
    """Public methods and properties defined by ``cls`` itself (inherited ones are
    validated where they are defined)."""
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        if (isinstance(value, (property, classmethod, staticmethod))
                or inspect.isfunction(value)):
            yield attr


def public_objects():
    names = []
    for module_name, module in MODULES.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue  # data: ACTIVATION_NAMES, POPULATION, SPORADIC_DEFECTS
            qualified = f"{module_name}.{name}"
            names.append(qualified)
            if inspect.isclass(obj):
                names.extend(f"{qualified}.{attr}" for attr in _members(obj))
    return names


PUBLIC = public_objects()


def _params():
    for name in PUBLIC:
        yield pytest.param(name, id=name)


def test_the_public_api_is_covered():
    # the walk finds what it should: functions, classes, methods, properties
    for name in ("fasthess.eigsh", "fasthess.jacobian_operator", "fasthess.TwoLayerNet.random",
                 "fasthess.TwoLayerNet.n_params", "fasthess.RankResult.gap_summary",
                 "fasthess.theory.exact_rank", "fasthess.HessianBlocks.full",
                 "fasthess.distributed.DistributedHessianOperator.close"):
        assert name in PUBLIC, name
    assert len(PUBLIC) > 70


@pytest.mark.parametrize("name", list(_params()))
def test_numpydoc_validation(name):
    result = numpydoc_validate.validate(name)
    skip = set(EXCLUDED_CHECKS)
    if name in RESULT_CLASSES:
        skip |= {"PR01", "PR02"}
    errors = [f"{code}: {message}" for code, message in result["errors"] if code not in skip]
    assert errors == [], f"{name}:\n" + "\n".join(errors)
    if name in RESULT_CLASSES:
        cls = getattr(fh, name.rpartition(".")[2])
        documented = {part.strip() for entry in
                      numpydoc_docscrape.NumpyDocString(inspect.getdoc(cls))["Attributes"]
                      for part in entry.name.split(",")}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in documented]
        assert missing == [], f"{name}: fields not under Attributes: {missing}"


def _badly_documented(x, y=1):
    """does things"""
    return x + y


def test_the_validation_can_fail():
    # a docstring without its sections is reported, so a pass above means something
    codes = {code for code, _ in numpydoc_validate.validate(
        f"{__name__}._badly_documented")["errors"]}
    assert {"SS02", "SS03", "PR01", "RT01", "EX01"} <= codes, codes
