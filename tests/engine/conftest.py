import pytest

from detr.config import SynthConfig
from detr.data.synthetic import write_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A few built-in images: enough for seconds-long end-to-end runs."""
    return write_dataset(tmp_path_factory.mktemp("synth"), SynthConfig(train_images=12, val_images=4))
