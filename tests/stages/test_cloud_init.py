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


def test_debians_datasource_list_would_win_over_an_earlier_file(tiny):
    dpkg_cfg = {"name": "org.osbuild-oci.files", "options": {"files": [
        {"path": "/etc/cloud/cloud.cfg.d/90_dpkg.cfg", "content": "datasource_list: [ NoCloud, ConfigDrive, None ]\n"}]}}
    tree = tiny(dpkg_cfg, cloud_init("10_datasources.cfg", {"datasource_list": ["Ec2"]}))
    assert "datasource_list: [Ec2]\n" == tree["/etc/cloud/cloud.cfg.d/10_datasources.cfg"]
    assert ("org.osbuild.cloud-init: warning: the tree's /etc/cloud/cloud.cfg.d/90_dpkg.cfg is read after "
            "10_datasources.cfg and its datasource_list wins") in tree.result.stderr


def test_bad_options_are_refused(refused):
    refused("org.osbuild.cloud-init", {"filename": "../../etc/passwd.cfg", "config": CONFIG}, "options.filename")
    refused("org.osbuild.cloud-init", {"filename": "a.cfg", "config": {"datasource_list": ["Rackspace"]}},
            "options.config.datasource_list[0]")
    refused("org.osbuild.cloud-init", {"filename": "a.cfg", "config": {"runcmd": ["reboot"]}},
            "options.config.runcmd")
    refused("org.osbuild.cloud-init", {"filename": "a.cfg", "config": {}}, "options.config")
