"""Configure a stack's hosts: render the inventory, then run a playbook through ansible-runner,
with whatever the provider must serve meanwhile (the lab's stand-in NVIDIA repository)."""

from __future__ import annotations

from tierkit import ansible, inventory as inv, providers
from tierkit.console import console, err_console
from tierkit.hosts import Host
from tierkit.paths import StackPaths
from tierkit.pins import write_known_hosts
from tierkit.spec import TierSpec


def configure(spec: TierSpec, hosts: list[Host], paths: StackPaths, playbook: str,
              *, quiet: bool = False) -> ansible.RunResult:
    """Render the stack's inventory, then run `playbook` on the hosts; its log goes to the
    stack's logs. quiet: progress to stderr (stdout stays for a JSON result). Hosts that carry
    their pinned key are verified against a known_hosts rebuilt from it (tierkit/pins.py)."""
    hosts = write_known_hosts(hosts, paths.inventory_dir / "known_hosts")
    path = inv.write(inv.render(spec, hosts), paths.inventory_dir)
    show = err_console.print if quiet else console.print
    extravars = inv.secret_vars()
    if spec.tier == "failover":
        extravars["failover_api_key"] = extravars["vllm_api_key"]  # the health checks complete a token
    with providers.get(spec).configure_services(spec, hosts):
        return ansible.run_playbook(playbook, path, hosts, extravars=extravars, show=show,
                                    log_file=paths.playbook_log(playbook))
