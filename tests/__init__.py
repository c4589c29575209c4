"""The test suite. This package runs before any test module or conftest imports huggingface_hub, which reads its
environment at import: no developer's token or endpoint may leak into a test, and no test may reach the real Hub
(each test that needs a Hub starts the loopback one in tests/fakes/hub_server.py and passes its address)."""

import os
import tempfile

os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="localai-test-hf-")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: a test that forgets its fake Hub fails fast
