import pytest
import torch

from tcnvae.checkpoints import load_checkpoint, save_checkpoint
from tcnvae.model import ARCHITECTURE, TCNVAE, reverse_gradient


@pytest.mark.parametrize("window_length", [32, 100, 128, 257])
@pytest.mark.parametrize("channels", [3, 6, 9])
def test_output_shapes_for_any_window_length_and_channel_count(window_length, channels):
    model = TCNVAE(input_dim=channels, latent_dim=16, num_activities=7, num_domains=4, hidden_dims=[16, 16])
    x = torch.randn(5, window_length, channels)
    recon, mu, logvar, activity_logits, domain_logits = model(x, alpha=0.3)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (5, 16)
    assert activity_logits.shape == (5, 7)
    assert domain_logits.shape == (5, 4)


def test_default_interface_matches_the_original():
    model = TCNVAE(input_dim=9, latent_dim=64, num_activities=13)
    assert hasattr(model, "tcn_encoder")
    outputs = model(torch.randn(2, 100, 9))
    assert len(outputs) == 5


def test_wrong_input_shape_is_named():
    model = TCNVAE(input_dim=6, num_activities=3, num_domains=2)
    with pytest.raises(ValueError, match=r"\(batch, time, 6\).*\(2, 128, 9\)"):
        model(torch.randn(2, 128, 9))
    with pytest.raises(ValueError, match="dropout"):
        TCNVAE(dropout=1.5)
    with pytest.raises(ValueError, match="hidden_dims"):
        TCNVAE(hidden_dims=[])


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    weights = torch.randn(4, 3)
    (reverse_gradient(x, alpha=0.25) * weights).sum().backward()
    assert torch.allclose(x.grad, -0.25 * weights)


def test_domain_loss_reaches_the_encoder_reversed_and_scaled_by_alpha():
    torch.manual_seed(0)
    model = TCNVAE(input_dim=3, latent_dim=8, num_activities=2, num_domains=2, hidden_dims=[8])
    model.eval()
    x = torch.randn(6, 40, 3)
    domains = torch.tensor([0, 1, 0, 1, 0, 1])

    def encoder_gradient(domain_logits_of):
        model.zero_grad()
        torch.nn.functional.cross_entropy(domain_logits_of(), domains).backward()
        return model.tcn_encoder.to_mu.weight.grad.clone()

    plain = encoder_gradient(lambda: model.domain_classifier(model.encode(x)[0]))
    assert plain.abs().sum() > 0
    for alpha in (0.0, 0.5, 1.0):
        reversed_ = encoder_gradient(lambda: model(x, alpha=alpha)[4])
        assert torch.allclose(reversed_, -alpha * plain, atol=1e-6)


def test_decoder_output_is_linear_and_can_be_negative():
    torch.manual_seed(0)
    model = TCNVAE(input_dim=6, num_activities=3, num_domains=2, hidden_dims=[16])
    recon = model(torch.randn(8, 64, 6))[0]
    assert (recon < 0).any() and (recon > 0).any()
    assert isinstance(model.decoder.output, torch.nn.Conv1d)


def test_evaluation_is_deterministic_and_reads_mu():
    model = TCNVAE(input_dim=6, num_activities=4, num_domains=2, head_input="z")
    model.eval()
    x = torch.randn(3, 128, 6)
    first, second = model(x), model(x)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    mu = first[1]
    assert torch.equal(first[3], model.activity_classifier(mu))


def test_input_means_reach_mu_directly_and_survive_a_rebuild_from_the_config():
    torch.manual_seed(0)
    model = TCNVAE(input_dim=6, num_activities=4, num_domains=2, hidden_dims=[16], input_means=True).eval()
    with torch.no_grad():
        model.tcn_encoder.to_mu.weight[:, :16] = 0  # μ is left with the channels' window means alone
    x = torch.randn(2, 64, 6)
    shuffled = x[:, torch.randperm(64)]  # the same means, another signal
    shifted = x.clone()
    shifted[:, :, 2] += 1.5
    mu = model.encode(x)[0]
    assert torch.allclose(model.encode(shuffled)[0], mu, atol=1e-5)
    assert torch.allclose(model.encode(shifted)[0] - mu, 1.5 * model.tcn_encoder.to_mu.weight[:, 16 + 2], atol=1e-5)
    rebuilt = TCNVAE.from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval().encode(x)[0], mu)
    plain = TCNVAE(input_dim=6, num_activities=4, num_domains=2, hidden_dims=[16])
    assert plain.tcn_encoder.to_mu.in_features == 16 and plain.config["input_means"] is False
    with pytest.raises(ValueError, match="input_means=1: expected True or False"):
        TCNVAE(input_dim=6, num_activities=4, num_domains=2, input_means=1)


def test_pretrained_encoder_round_trip(tmp_path):
    source = TCNVAE(input_dim=6, num_activities=4, num_domains=2, hidden_dims=[16, 16])
    source.save_encoder(tmp_path / "encoder.pt")
    target = TCNVAE(input_dim=6, num_activities=4, num_domains=2, hidden_dims=[16, 16])
    target.load_pretrained_encoder(tmp_path / "encoder.pt")
    for (name, a), b in zip(source.tcn_encoder.state_dict().items(), target.tcn_encoder.state_dict().values()):
        assert torch.equal(a, b), name
    mismatched = TCNVAE(input_dim=6, num_activities=4, num_domains=2, hidden_dims=[32])
    with pytest.raises(ValueError, match="does not hold an encoder matching"):
        mismatched.load_pretrained_encoder(tmp_path / "encoder.pt")


class _Payload:
    """An arbitrary class: unpickling it would import and run code."""


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "object": _Payload()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(path)
    model = TCNVAE(input_dim=6, num_activities=4, num_domains=2)
    with pytest.raises(ValueError, match="refusing to load"):
        model.load_pretrained_encoder(path)


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)

    def interrupted_save(obj, stream):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


@pytest.mark.parametrize("setting, value, expected", [
    ("kernel_size", 1, "an integer >= 2"),  # pointwise convolutions: the encoder would see no time
    ("hidden_dims", [], "a non-empty list of positive integers"),
    ("dropout", 1.0, r"a fraction in \[0, 1\)"),
])
def test_one_rule_per_setting_for_the_model_and_the_trial_config(setting, value, expected):
    from tcnvae.tuning.config import validate_config

    message = rf"{setting}={value!r}: expected {expected}".replace("[]", r"\[\]")
    with pytest.raises(ValueError, match=message):
        TCNVAE(input_dim=3, num_activities=2, num_domains=2, **{setting: value})
    with pytest.raises(ValueError, match=message):
        validate_config({setting: value})


def test_the_models_defaults_are_the_trial_configs():
    from tcnvae.tuning.config import validate_config

    config = validate_config({})
    model = TCNVAE(input_dim=3, num_activities=2, num_domains=2)
    assert {key: model.config[key] for key in ARCHITECTURE} == {key: config[key] for key in ARCHITECTURE}
