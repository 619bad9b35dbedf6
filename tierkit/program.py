"""The Pulumi program: stack config -> tier spec -> fleet components -> exports.

`pulumi up --stack NAME` runs it through __main__.py; without the Pulumi CLI, `tierkit up`
runs it through the rehearsal (tierkit/rehearsal/). Config it reads (namespace `tierkit`):

- `tierkit:tier`    the tier spec (an object; see stacks/), validated before any resource exists;
- `tierkit:apiKey`  the API key vLLM requires on /v1/* (secret; optional on the lab; elsewhere,
                    when unset, one is generated once into the stack's state as a secret output,
                    shown only by `pulumi stack output apiKey --show-secrets`);
- `tierkit:hfToken` a Hugging Face token for gated models (secret; optional).
Set the secrets with `pulumi config set --secret tierkit:apiKey ...`; the rehearsal, which cannot
decrypt `secure:` values, reads them from $TIERKIT_API_KEY and $HF_TOKEN instead (SECRET_ENV).
"""

from __future__ import annotations

import shlex
import sys

import pulumi
from pulumi_command import local

from tierkit import fleet, providers
from tierkit.errors import TierkitError
from tierkit.pulumi_cli import SECRET_CONFIG
from tierkit.providers import StackContext
from tierkit.spec import SPEC_KEY, TierSpec, parse_spec, plan_for_spec, project_root

# Secret config keys, and the environment variables the rehearsal (and `tierkit up` with the CLI)
# takes them from.
SECRET_ENV = SECRET_CONFIG


class ProgramError(TierkitError, pulumi.RunError):
    """A bad spec: Pulumi prints the message without a traceback; tierkit prints `error:` lines."""


def load_spec(config: pulumi.Config) -> TierSpec:
    """The validated spec (its provider's rules included), or ProgramError with every problem
    (nothing is registered yet)."""
    try:
        raw = config.require_object("tier")
    except pulumi.ConfigMissingError:
        raise ProgramError(f"{SPEC_KEY}: missing from the stack's config; add the tier spec (see stacks/)") from None
    except pulumi.ConfigTypeError:
        raise ProgramError(f"{SPEC_KEY}: not an object; give the tier spec as a YAML mapping (see stacks/)") from None
    try:
        return parse_spec(raw)
    except TierkitError as exc:
        raise ProgramError(*exc.problems) from None


# Run once by the `api-key` Command; its stdout is a secret output kept in the stack's state.
API_KEY_GENERATOR = "import secrets; print(secrets.token_urlsafe(32))"


def generated_api_key() -> pulumi.Output:
    """An API key made once (a Command with no update trigger) and kept as a secret."""
    made = local.Command("api-key", create=shlex.join([sys.executable, "-c", API_KEY_GENERATOR]),
                         logging=local.Logging.NONE, opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
    return pulumi.Output.secret(made.stdout.apply(lambda out: out.strip()))


def main() -> None:
    config = pulumi.Config("tierkit")
    spec = load_spec(config)
    plan = plan_for_spec(spec)
    ctx = StackContext(root=project_root(), stack=pulumi.get_stack())
    api_key = config.get_secret("apiKey")
    if api_key is None and providers.get(spec).api_key_required:
        api_key = generated_api_key()
        pulumi.export("apiKey", api_key)  # a secret output: printed only with --show-secrets
    secrets = fleet.Secrets(api_key=api_key, hf_token=config.get_secret("hfToken"))

    servers = fleet.Servers(spec, ctx)
    ready = fleet.Readiness(ctx, servers)
    configure = fleet.Configure(spec, ctx, ready, secrets)
    endpoint = fleet.endpoint_of(spec, servers)
    smoke = fleet.Smoke(spec, ctx, configure, ready, endpoint, secrets)

    pulumi.export("endpoint", endpoint)
    pulumi.export("hosts", ready.hosts)
    pulumi.export("host_keys", ready.pinned.apply(lambda hosts: {h["name"]: h["host_key"] for h in hosts}))
    pulumi.export("plan", plan.to_json())
    pulumi.export("smoke", smoke.summary)
    pulumi.export("notes", pulumi.Output.all(ready.hosts, endpoint, servers.notes).apply(
        lambda a: [*fleet.notes(spec, plan, a[0], a[1]), *a[2]]
    ))
