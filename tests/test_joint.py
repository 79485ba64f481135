"""Joint fine-tuning (pipeline.training.joint, stage=joint) and the whole chain (experiment=all)."""

import copy

import lightning as L
import pytest
import torch
from conftest import compose_chain, compose_train, run_module

from common.checkpoint import read_model_file
from common.errors import CheckpointError, ConfigError
from data.datamodule import build_datamodule
from pipeline.training.chain import train_chain
from pipeline.training.joint import JointModule
from pipeline.training.stage import train


def _joint(smoke_run, **kwargs) -> JointModule:
    return JointModule.from_stage_checkpoints({n: smoke_run[n] for n in ("mpn", "epn", "ipn")}, **kwargs)


def _batch(module: JointModule, run_dir) -> dict:
    cfg = compose_train(run_dir, "joint")
    cfg.data.edges = True
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def test_the_chain_writes_every_step_the_model_and_the_grid(smoke_run):
    run = smoke_run["dir"]
    for step in ("mpn", "epn", "ipn", "joint"):
        assert (run / step / "DONE").is_file()
        assert read_model_file(smoke_run[step], step)  # each step's checkpoint is of its own stage
    assert smoke_run["model"].is_file()
    assert (run / "blind_inpainting.png").is_file()


def test_what_ships_is_chosen_on_the_blind_pipeline_and_keeps_its_mask_rule(smoke_run):
    """The mask rule is calibrated once, right after the MPN step (``mask_rule.json``), and every
    later step trains on it; the chain scores the stages together, the joint run and their
    classical floor blind on the validation photos (intact ones included), with that rule, and
    ships the best, the rule stored with it."""
    import json

    from omegaconf import OmegaConf

    rule = json.loads((smoke_run["dir"] / "mask_rule.json").read_text())
    for key in ("hole_threshold", "soft_floor", "mask_rules", "mpn_calibration"):
        assert key in rule
    for step in ("epn", "ipn", "joint"):
        settings = OmegaConf.load(smoke_run["dir"] / step / "config.yaml").pipeline
        assert (settings.hole_threshold, settings.soft_floor) == (rule["hole_threshold"], rule["soft_floor"])
    report = json.loads((smoke_run["dir"] / "selection.json").read_text())
    assert set(report["candidates"]) == {"stages", "joint", "floor"} and report["chosen"] in report["candidates"]
    chosen = report["candidates"][report["chosen"]]
    assert all(chosen["selection"] >= c["selection"] for c in report["candidates"].values())
    assert chosen["selection"] >= report["candidates"]["floor"]["selection"]  # never below the floor
    for key in ("hole_psnr", "iou", "clean_flagged", "clean_psnr"):
        assert key in chosen
    stored = read_model_file(smoke_run["model"], "pipeline").config["pipeline"]
    assert (stored["hole_threshold"], stored["soft_floor"]) == (rule["hole_threshold"], rule["soft_floor"])


def test_later_steps_learn_on_what_the_trained_stages_give(smoke_run):
    """EdgeConnect's third stage: the EPN step is fed by the trained MPN, the IPN step by both."""
    from omegaconf import OmegaConf

    epn = OmegaConf.load(smoke_run["dir"] / "epn" / "config.yaml").stage.module.feed
    ipn = OmegaConf.load(smoke_run["dir"] / "ipn" / "config.yaml").stage.module.feed
    assert epn.mpn_checkpoint == str(smoke_run["mpn"]) and epn.epn_checkpoint is None
    assert (ipn.mpn_checkpoint, ipn.epn_checkpoint) == (str(smoke_run["mpn"]), str(smoke_run["epn"]))


def test_a_chain_rerun_skips_finished_steps(smoke_run, tmp_path):
    cfg = compose_chain(smoke_run["dir"], "chain.demo_rows=0")
    before = {p: p.stat().st_mtime_ns for p in smoke_run["dir"].rglob("*.ckpt")}
    checkpoints = train_chain(cfg, smoke_run["dir"])
    assert checkpoints["joint"] == smoke_run["joint"]
    assert {p: p.stat().st_mtime_ns for p in smoke_run["dir"].rglob("*.ckpt")} == before


def test_joint_loads_the_three_stage_weights(smoke_run):
    module = _joint(smoke_run)
    for name in ("mpn", "epn", "ipn"):
        trained = read_model_file(smoke_run[name], name).state
        own = module.stage(name).state_dict()
        assert all(torch.equal(own[k], v) for k, v in trained.items())


def test_joint_fast_dev_run_from_three_smoke_checkpoints(smoke_run, tmp_path):
    cfg = compose_train(
        tmp_path,
        "joint",
        "debug=fast_dev_run",
        *(f"stage.{n}_checkpoint={smoke_run[n]}" for n in ("mpn", "epn", "ipn")),
    )
    trainer = train(cfg, tmp_path)
    assert trainer.state.finished and trainer.global_step == 2  # one D and one G step
    assert torch.isfinite(trainer.callback_metrics["train/g_loss"])
    assert torch.isfinite(trainer.callback_metrics["train/d_epn"]) and torch.isfinite(
        trainer.callback_metrics["train/d_ipn"]
    )


def test_ipn_loss_reaches_the_mask_network_through_the_mask_rule(smoke_run, tmp_path):
    module = _joint(smoke_run, loss_weights={"mpn": 0.0, "epn": 0.0, "ipn": 1.0})
    batch = _batch(module, tmp_path)
    loss, _ = module.generator_loss(batch, module.generate(batch))
    loss.backward()
    grads = [p.grad for p in module.stage("mpn").generator.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0


def test_freeze_keeps_a_stage_fixed_while_the_rest_and_both_discriminators_train(smoke_run, tmp_path):
    module = _joint(smoke_run, freeze=["mpn"], lr_scale=10.0)
    before = copy.deepcopy(module.state_dict())
    trainer = L.Trainer(
        max_steps=4,
        accelerator="cpu",  # one process, whatever GPUs the machine has
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    cfg = compose_train(tmp_path, "joint")
    cfg.data.edges = True
    trainer.fit(module, datamodule=build_datamodule(cfg))
    after = module.state_dict()

    def changed(prefix):
        return any(
            not torch.equal(before[k], after[k])
            for k in before
            if k.startswith(prefix) and after[k].is_floating_point()
        )

    mpn_params = {k for k, _ in module.named_parameters() if k.startswith("pipeline.mpn.")}
    assert mpn_params and not any(not torch.equal(before[k], after[k]) for k in mpn_params)
    assert not module.stage("mpn").generator.training  # frozen batch-norm statistics stay as trained
    assert changed("pipeline.epn.generator.") and changed("pipeline.ipn.generator.")
    assert changed("pipeline.epn.discriminator.") and changed("pipeline.ipn.discriminator.")


def test_learning_rates_are_each_stages_own_times_lr_scale(smoke_run):
    module = _joint(smoke_run, lr_scale=0.1, freeze=["epn"])
    opt_g, opt_d = module.configure_optimizers()
    assert [g["lr"] for g in opt_g.param_groups] == pytest.approx([1e-5, 1e-5])  # mpn, ipn (epn frozen)
    assert [g["lr"] for g in opt_d.param_groups] == pytest.approx([1e-6, 1e-5])  # EPN D ×0.1, IPN D ×1
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.9) and opt_g.param_groups[1]["betas"] == (0.5, 0.999)


@pytest.mark.parametrize("freeze", [["gan"], ["mpn", "epn", "ipn"]])
def test_bad_freeze_lists_are_refused(smoke_run, freeze):
    with pytest.raises(ConfigError):
        _joint(smoke_run, freeze=freeze)


def test_joint_checkpoint_rebuilds_without_the_stage_checkpoints(smoke_run):
    joint = read_model_file(smoke_run["joint"], "joint")
    module = JointModule(**joint.config)
    module.load_state_dict(joint.state)


def test_joint_resumes_from_its_last_checkpoint(smoke_run, tmp_path):
    last = smoke_run["dir"] / "joint" / "checkpoints" / "last.ckpt"
    cfg = compose_train(tmp_path, "joint", f"ckpt_path={last}", "trainer.max_epochs=2")
    trainer = train(cfg, tmp_path)
    assert trainer.current_epoch == 2 and trainer.global_step > read_model_file(last).checkpoint["global_step"]


def test_joint_cli_reports_a_missing_or_foreign_checkpoint(smoke_run, tmp_path):
    result = run_module(
        "pipeline.train",
        "stage=joint",
        "debug=smoke",
        f"hydra.run.dir={tmp_path}/a",
        f"stage.mpn_checkpoint={smoke_run['mpn']}",
        f"stage.epn_checkpoint={smoke_run['epn']}",
    )
    assert result.returncode != 0 and "stage.ipn_checkpoint" in result.stderr and "Traceback" not in result.stderr
    result = run_module(
        "pipeline.train",
        "stage=joint",
        "debug=smoke",
        f"hydra.run.dir={tmp_path}/b",
        f"stage.mpn_checkpoint={smoke_run['epn']}",
        f"stage.epn_checkpoint={smoke_run['epn']}",
        f"stage.ipn_checkpoint={smoke_run['ipn']}",
    )
    assert result.returncode != 0 and "not 'mpn'" in result.stderr and "Traceback" not in result.stderr


def test_from_stage_checkpoints_needs_all_three(smoke_run):
    with pytest.raises(CheckpointError, match="ipn"):
        JointModule.from_stage_checkpoints({"mpn": smoke_run["mpn"], "epn": smoke_run["epn"]})


def test_the_discriminator_cannot_move_the_mask(smoke_run):
    """In joint training the IPN's adversarial loss reaches the MPN through the image only: the
    mask channel D is given carries no gradient (else m̂ would learn to please D)."""
    module = _joint(smoke_run)
    ipn = module.stage("ipn")
    mask = torch.rand(1, 1, 32, 32, requires_grad=True)
    output = torch.rand(1, 3, 32, 32, requires_grad=True)
    ipn.adversarial.generator(ipn._discriminate(output, mask)).backward()
    assert mask.grad is None and output.grad is not None
