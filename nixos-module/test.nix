# nixos-module/test.nix: a NixOS VM test of services.ccprewarm (needs Nix,
# nixpkgs and KVM; `nix build .#checks.x86_64-linux.nixos`).  NOT RUN in this
# repository (no nixpkgs here); tests/integration/test_nixos_module.sh only
# parses it.  One node: a local docker-registry as the docker.io upstream,
# ccprewarm in front of it with a recipe enrolled into dockerd, a plain
# `docker pull` through the mirror, then NixOS's docker-prune unit (with
# the user's own `--all` flag): the pinned image stays, the other goes.
{ pkgs, lib, ... }:

let
  # Two tiny images to push into the local registry.
  mkImage = name: pkgs.dockerTools.buildImage {
    inherit name;
    tag = "1";
    copyToRoot = pkgs.runCommand "${name}-root" { } ''
      mkdir -p $out/etc
      echo ${name} >$out/etc/${name}
    '';
    config.Cmd = [ "/bin/false" ];
  };
  pinned = mkImage "pinned";
  other = mkImage "other";

  recipes = pkgs.runCommand "ccprewarm-test-recipes" { } ''
    mkdir -p $out/demo
    cat >$out/demo/compose.yml <<'YML'
    services:
      app:
        image: pinned:1
    YML
    touch $out/demo/.env.sample
  '';
in
{
  name = "ccprewarm";

  nodes.machine = { config, ... }: {
    imports = [ ./default.nix ];

    virtualisation.memorySize = 2048;
    virtualisation.diskSize = 4096;
    environment.systemPackages = [ pkgs.skopeo ];

    services.dockerRegistry = {
      enable = true;
      listenAddress = "127.0.0.1";
      port = 5001;
    };

    virtualisation.docker = {
      enable = true;
      autoPrune = {
        enable = true;
        flags = [ "--all" ];
      };
    };

    services.ccprewarm = {
      enable = true;
      package = pkgs.callPackage ./package.nix { };
      upstreams."docker.io".url = "http://127.0.0.1:5001";
      recipesDir = recipes;
      recipes = [ "demo" ];
      dockerWarm = true;
      maxBytes = "1G";
      warm.enable = true;
    };
  };

  testScript = ''
    machine.wait_for_unit("docker-registry.service")
    machine.wait_for_unit("ccprewarm.service")
    machine.wait_for_unit("docker.service")
    machine.wait_for_open_port(5000)

    # The generated config passed `serve --check` at build time; the
    # daemon runs hardened as its own user.
    machine.succeed("systemctl show -p User ccprewarm.service | grep -x User=ccprewarm")
    machine.succeed("systemctl show -p ProtectSystem ccprewarm.service | grep -x ProtectSystem=strict")

    # Seed the upstream, then enroll (the first enroll at boot found an
    # empty registry).
    for name, image in (("pinned", "${pinned}"), ("other", "${other}")):
        machine.succeed(
            f"skopeo copy --dest-tls-verify=false docker-archive:{image} "
            f"docker://127.0.0.1:5001/library/{name}:1"
        )
    machine.succeed("systemctl restart ccprewarm-enroll.service")
    machine.succeed("ccprewarm status demo --server http://127.0.0.1:5000")
    machine.succeed("docker image inspect pinned:1")

    # A plain pull goes through the mirror (registry-mirrors from the module).
    machine.succeed("docker pull other:1")
    machine.succeed("journalctl -u ccprewarm.service | grep -q library/other")

    # NixOS's own docker-prune unit, extended by the module: the pins are
    # synced first, the label filter keeps the placeholders and so the image.
    machine.succeed("systemctl cat docker-prune.service | grep -q 'docker-pins sync'")
    machine.succeed("systemctl start docker-prune.service")
    machine.succeed("docker image inspect pinned:1")
    machine.fail("docker image inspect other:1")

    # Kept enrolled: the warm timer's service re-enrolls and warms.
    machine.succeed("ccprewarm unenroll demo --server http://127.0.0.1:5000")
    machine.succeed("systemctl start ccprewarm-warm.service")
    machine.succeed("ccprewarm list --server http://127.0.0.1:5000 | grep -q demo")
  '';
}
