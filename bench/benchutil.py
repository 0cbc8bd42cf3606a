"""Helpers the benchmarks share: the kernel's RSS counters of this process (Linux /proc)."""


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> int:
    """Reset the kernel's peak-RSS counter; return the current RSS (KiB)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_kib("VmRSS")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("?" if it names none)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def machine_line() -> str:
    """One line naming the machine: CPU model, cores, torch version and threads, 1-min load average."""
    import os

    import torch

    return (f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads; load average {os.getloadavg()[0]:.2f}")


def load_side(impl: str, model_dir: str):
    """(model, vocab size) of one side of a benchmark: llamaforge's ``load_model`` or transformers'
    ``LlamaForCausalLM`` (sdpa) on the same HF dir, fp32."""
    import torch

    if impl == "llamaforge":
        from llamaforge.model.checkpoint_io import load_model

        model = load_model(model_dir, dtype=torch.float32)
        return model, model.args.vocab_size
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    return model, model.config.vocab_size
