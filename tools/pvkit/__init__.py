"""pvkit: build, boot and measure Xen paravirtualized Linux kernels."""

__version__ = "0.1.0"
