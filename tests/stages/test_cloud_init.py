"""org.osbuild.cloud-init: a YAML drop-in in /etc/cloud/cloud.cfg.d."""

from __future__ import annotations

import yaml

CONFIG = {"datasource_list": ["NoCloud", "None"], "ssh_pwauth": False,
          "system_info": {"default_user": {"name": "admin"}}, "network": {"config": "disabled"},
          "output": {"all": "| tee -a /var/log/cloud-init-output.log"},
          "reporting": {"logging": {"type": "log"}}, "datasource": {"Azure": {"apply_network_config": False}}}


def cloud_init(filename: str, config: dict) -> dict:
    return {"name": "org.osbuild.cloud-init", "options": {"filename": filename, "config": config}}


def test_the_drop_in_holds_the_config(tiny):
    tree = tiny(cloud_init("99_osbuild.cfg", CONFIG))
    text = tree["/etc/cloud/cloud.cfg.d/99_osbuild.cfg"]
    assert yaml.safe_load(text) == CONFIG
    # ds-identify reads the key and its whole list from one line.
    assert "datasource_list: [NoCloud, None]\n" in text
    assert "warning" not in tree.result.stderr


def test_a_later_files_datasource_list_would_win_and_the_stage_says_so(tiny):
    # As Ubuntu's cloud-init package writes one from debconf (Debian 12's writes none).
    later = {"name": "org.osbuild-oci.files", "options": {"files": [
        {"path": "/etc/cloud/cloud.cfg.d/90_dpkg.cfg", "content": "datasource_list: [ NoCloud, ConfigDrive, None ]\n"},
        {"path": "/etc/cloud/cloud.cfg.d/95_logging.cfg", "content": "output: {all: '| tee -a /var/log/x'}\n"}]}}
    tree = tiny(later, cloud_init("10_datasources.cfg", {"datasource_list": ["Ec2"]}))
    assert "datasource_list: [Ec2]\n" == tree["/etc/cloud/cloud.cfg.d/10_datasources.cfg"]
    warnings = [line for line in tree.result.stderr.splitlines() if "warning" in line]
    assert warnings == ["org.osbuild.cloud-init: warning: the tree's /etc/cloud/cloud.cfg.d/90_dpkg.cfg is read "
                        "after 10_datasources.cfg and its datasource_list wins; "
                        "give this file a name that sorts after it"]


def test_bad_options_are_refused(refused):
    refused("org.osbuild.cloud-init", {"filename": "../../etc/passwd.cfg", "config": CONFIG}, "options.filename")
    refused("org.osbuild.cloud-init", {"filename": "a.cfg", "config": {"datasource_list": ["Rackspace"]}},
            "options.config.datasource_list[0]")
    refused("org.osbuild.cloud-init", {"filename": "a.cfg", "config": {"runcmd": ["reboot"]}},
            "options.config.runcmd")
    refused("org.osbuild.cloud-init", {"filename": "a.cfg", "config": {}}, "options.config")
