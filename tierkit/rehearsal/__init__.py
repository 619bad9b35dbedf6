"""Run the Pulumi program without the Pulumi CLI: tierkit's rehearsal.

The Pulumi CLI cannot be installed on tierkit's machines, so `tierkit up` falls back to this. It
loads the stack's config, installs Pulumi's mock runtime with a monitor that records the resource
graph, and runs the real program twice: a preview that executes nothing and refuses any custom
resource that is not a `command:local:Command`, then a run that executes each Command's `create`
for real as the SDK registers it (in dependency order, independent ones in parallel).

It keeps no state and computes no diffs: every `up` runs every create again (tierkit's commands
are idempotent). It records the commands it ran in `.tierkit/<stack>/rehearsal.json`, so that
`tierkit down` can run their deletes, dependents first. That record is not a Pulumi state.

Modules, one job each:
- `runtime`: the only one touching the Pulumi SDK's internals (mock runtime, monitor, secrets);
  the Pulumi program's tests use it as their harness;
- `execute`: running one command as pulumi-command's local provider does;
- `record`: the `.tierkit/<stack>/rehearsal.json` record;
- `schedule`: undoing a graph, dependents first, in parallel;
- `runner`: the backend that lists, runs and records Command resources;
- `config`: a stack's config as Pulumi hands it to a program;
- `engine`: `up` and `down`.

The package itself imports nothing, so that `record` (the record's path, for `tierkit up`'s first
line) is cheap to import; `engine` and `runtime` bring the Pulumi SDK.
"""
