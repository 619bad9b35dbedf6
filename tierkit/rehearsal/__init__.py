"""Run the Pulumi program without the Pulumi CLI: tierkit's rehearsal.

The Pulumi CLI cannot be installed on tierkit's machines, so `tierkit up` falls back to this. It
loads the stack's config, installs Pulumi's mock runtime with a monitor that records the resource
graph, and runs the real program twice: a preview that executes nothing and refuses any custom
resource that is not a `command:local:Command`, then a run that executes each Command's `create`
for real as the SDK registers it (in dependency order, independent ones in parallel).

Its record, `.tierkit/<stack>/rehearsal.json`, plays the part of a Pulumi state for the commands:
each one's inputs (as a salted hash) and outputs, the secret ones encrypted with a key kept outside
the project. On the next `up` a command whose inputs match its record does not run and answers
with its recorded outputs, as Pulumi leaves an unchanged resource alone; one whose inputs changed
is replaced (the new create, then the old delete; the old delete first for
`delete_before_replace`); one the program no longer registers is deleted. `tierkit down` runs the
recorded deletes, dependents first. It is not a Pulumi state: local commands only, no refresh, no
import.

Modules, one job each:
- `runtime`: the only one touching the Pulumi SDK's internals (mock runtime, monitor, secrets);
  the Pulumi program's tests use it as their harness;
- `execute`: running one command as pulumi-command's local provider does;
- `record`: the `.tierkit/<stack>/rehearsal.json` record;
- `sealed`: the record's secret outputs, encrypted with a key outside the project;
- `schedule`: undoing a graph, dependents first, in parallel;
- `undo`: running recorded deletes (a replaced command's, `down`'s);
- `runner`: the backend that lists, runs or keeps, and records Command resources;
- `config`: a stack's config as Pulumi hands it to a program;
- `engine`: `up` and `down`.

The package itself imports nothing, so that `record` (the record's path, for `tierkit up`'s first
line) is cheap to import; `engine` and `runtime` bring the Pulumi SDK.
"""
