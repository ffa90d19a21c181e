"""Runtime plumbing shared by tasks: device selection and inference backends (torch, ONNX Runtime)."""
