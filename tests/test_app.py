"""The running app through its HTTP API (gradio_client), as a script or another program would use it."""
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def _img(path):
    return np.asarray(Image.open(path).convert("L"), dtype=float)


def test_api_names_and_parameters(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {ep: [p["parameter_name"] for p in api[ep]["parameters"]] for ep in ("/forward", "/posterior", "/sample")}
    assert params["/forward"] == ["image", "t", "schedule", "timesteps", "beta_start", "beta_end"]
    assert params["/posterior"] == ["image", "t", "schedule", "timesteps", "beta_start", "beta_end"]
    assert params["/sample"] == ["label", "sampler", "steps", "eta", "guidance_scale", "seed", "n", "guidance_until",
                                  "model"]


def test_forward_and_posterior(client, tmp_path):
    early = client.predict(None, 5, "linear", 1000, 1e-4, 0.02, api_name="/forward")
    late = client.predict(None, 990, "linear", 1000, 1e-4, 0.02, api_name="/forward")
    x0 = _img(early[1])
    assert np.abs(_img(early[0]) - x0).mean() < np.abs(_img(late[0]) - x0).mean()      # x_t comes first
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(photo)
    out = client.predict(handle_file(str(photo)), 500, "cosine", 1000, 1e-4, 0.02, api_name="/posterior")
    assert "x_0 +" in out[4] and any(ch.isdigit() for ch in out[4])


def test_sample_streams_steps_and_ends_with_the_grid(client):
    job = client.submit("Trouser", "ddim", 8, 0.0, 3.0, 1, 4, api_name="/sample")
    updates = list(job)
    assert len(updates) >= 2
    final = updates[-1]
    assert "step 8/8" in final[2] and _img(final[0]).shape[0] > 100


@pytest.mark.parametrize("endpoint,args,needle", [
    ("/forward", (None, 5000, "linear", 1000, 1e-4, 0.02), "999"),
    ("/forward", (None, 10, "exponential", 1000, 1e-4, 0.02), "exponential"),
    ("/forward", (None, 10, "linear", 1000, 0.05, 0.01), "must not exceed"),
    ("/posterior", (None, 10, "linear", 1, 1e-4, 0.02), "timesteps"),
    ("/sample", ("Hat", "ddim", 5, 0, 3, 0, 2), "Hat"),
    ("/sample", ("any", "ddim", 5, 0, 3, 0, 99), "16"),
    ("/sample", ("any", "ddim", 0, 0, 3, 0, 2), "minimum"),
    ("/sample", ("any", "plms", 5, 0, 3, 0, 2), "plms"),
    ("/sample", ("any", "ddim", 5, 0, 3, 0, 2, 500, "imagenet"), "imagenet"),
])
def test_bad_values_are_refused_and_the_server_keeps_serving(client, endpoint, args, needle):
    with pytest.raises(Exception) as e:
        if endpoint == "/sample":
            list(client.submit(*args, api_name=endpoint))
            client.submit(*args, api_name=endpoint).result()
        else:
            client.predict(*args, api_name=endpoint)
    assert needle in str(e.value)
    ok = client.predict(None, 10, "linear", 1000, 1e-4, 0.02, api_name="/forward")
    assert ok[0]


def test_corrupt_upload(client, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(Exception, match="could not read"):
        client.predict(handle_file(str(bad)), 10, "linear", 1000, 1e-4, 0.02, api_name="/forward")
    assert client.predict(None, 10, "linear", 1000, 1e-4, 0.02, api_name="/forward")[0]
