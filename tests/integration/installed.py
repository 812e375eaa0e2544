"""What a user installs, run as installed (stdlib only).

Inside tools/norn-sandbox, /usr is a copy-on-write overlay private to the
sandbox: `meson install` (prefix /usr/local by default) or the files of the
Debian package land there and nowhere else, and the sandbox's user manager
runs nornd from the installed units, as a host would. Nothing runs from the
checkout, which may be anywhere (/tmp, /var/tmp, a path with spaces) and
which PrivateTmp= would hide from the unit.

The installed units are system units; to run them in the user manager they
are linked into $XDG_RUNTIME_DIR/systemd/user and configured with drop-ins,
as an admin would with `systemctl edit`: `nornd --user`, the sandbox's
database, and no /etc/norn/nornd.env of the host.
"""
import json
import os
import subprocess

RUNTIME_UNIT_DIR = os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "systemd", "user")
UNITS = ("nornd.socket", "nornd.service", "norn.slice")


def _run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def meson_install(build_dir):
    """`meson install` of build_dir into the sandbox's /usr; returns the
    installed path of each file ({build path: installed path})."""
    if os.environ.get("NORN_SANDBOX") != "1":
        raise RuntimeError("installs only inside tools/norn-sandbox (its /usr is private)")
    installed = json.loads(_run(["meson", "introspect", "--installed", build_dir]))
    outside = [p for p in installed.values() if not p.startswith("/usr/")]
    if outside:
        raise RuntimeError(f"the build's prefix is not under /usr (the sandbox's overlay): {outside[:3]}")
    _run(["meson", "install", "-C", build_dir, "--no-rebuild", "--quiet"])
    return installed


def installed_path(installed, suffix):
    """The one installed path ending in suffix (e.g. "/sbin/nornd")."""
    found = [p for p in installed.values() if p.endswith(suffix)]
    if len(found) != 1:
        raise RuntimeError(f"expected one installed file ending in {suffix}, found {found}")
    return found[0]


def link_units(unit_dir, service_settings="", socket_listen=None):
    """Links the installed units from unit_dir into the user manager and
    configures them with drop-ins; returns the nornd binary the unit runs."""
    exec_start = None
    with open(os.path.join(unit_dir, "nornd.service")) as f:
        for line in f:
            if line.startswith("ExecStart="):
                exec_start = line.strip().split("=", 1)[1]
    if not exec_start or not os.path.isabs(exec_start.split()[0]):
        raise RuntimeError(f"no absolute ExecStart= in {unit_dir}/nornd.service")
    os.makedirs(RUNTIME_UNIT_DIR, exist_ok=True)
    for u in UNITS:
        link = os.path.join(RUNTIME_UNIT_DIR, u)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.join(unit_dir, u), link)
    _dropin("nornd.service",
            "[Service]\n"
            "# the user manager's nornd: session bus, user manager\n"
            f"ExecStart=\nExecStart={exec_start} --user\n"
            "# not the host's configuration, whatever it holds\n"
            "EnvironmentFile=\n"
            + environment_line("NORN_DATABASE_URL", os.environ["NORN_DATABASE_URL"]) + service_settings
            + sanitizer_settings())
    if socket_listen:
        _dropin("nornd.socket", f"[Socket]\nListenStream=\nListenStream={socket_listen}\n")
    _run(["systemctl", "--user", "daemon-reload"])
    return exec_start.split()[0]


def sanitizer_settings():
    """In the sanitizer run (tools/run-tests sets NORN_SANITIZER_DIR), a nornd
    started by the user manager reports where one started by a test does: the
    sanitizer settings, leave to write there (ProtectSystem=strict would not)
    and ptrace(), which LeakSanitizer calls at exit and SystemCallFilter= does
    not allow. For this run only; the installed unit stays as it is."""
    san_dir = os.environ.get("NORN_SANITIZER_DIR")
    if not san_dir:
        return ""
    lines = f"ReadWritePaths={san_dir}\nSystemCallFilter=ptrace\n"
    for v in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if os.environ.get(v):
            lines += environment_line(v, os.environ[v])
    return lines


def environment_line(name, value):
    """An Environment= line for a unit file, quoted for systemd (specifiers too)."""
    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={value}"\n'


def unlink_units():
    subprocess.run(["systemctl", "--user", "stop", "nornd.socket", "nornd.service"], capture_output=True)
    for u in UNITS:
        for p in (os.path.join(RUNTIME_UNIT_DIR, u), os.path.join(RUNTIME_UNIT_DIR, u + ".d", "sandbox.conf")):
            if os.path.lexists(p):
                os.unlink(p)
    subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True)


def _dropin(unit, text):
    d = os.path.join(RUNTIME_UNIT_DIR, unit + ".d")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "sandbox.conf"), "w") as f:
        f.write(text)
