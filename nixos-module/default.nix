# nixos-module/default.nix: services.ccprewarm.  Only the option
# declarations and the mkIf glue live here; what the options turn into
# (config JSON, command lines, prune flags, hosts.toml, hardening) is
# computed by ./lib.nix, which needs only builtins and is tested without
# nixpkgs (tests/integration/test_nixos_module.sh).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge mkAfter types literalExpression;

  cfg = config.services.ccprewarm;
  pure = import ./lib.nix;
  json = pkgs.formats.json { };

  bin = "${cfg.package}/bin/ccprewarm";

  cfgValues = {
    inherit (cfg) listen upstreams maxBytes minFree tagFreshness platforms
      recipesDir recipes dockerWarm registerDockerMirror containerdHosts
      pinProtection openFirewall settings;
    dataDir = toString cfg.dataDir;
    warm = { inherit (cfg.warm) enable dates; };
    dockerSocket = "/run/docker.sock";
  };
  configFile = json.generate "ccprewarm.json" r.config;

  # `serve --check` at build time: a bad option fails nixos-rebuild, not
  # the boot (as nixpkgs' atticd module does).
  checkedConfigFile = pkgs.runCommand "ccprewarm-checked.json"
    {
      checkConfigFile = json.generate "ccprewarm-check.json" r.checkConfig;
      inherit configFile;
    }
    ''
      ${r.checkScript}
      cp "$configFile" "$out"
    '';

  r = pure.build cfgValues { inherit bin; configFile = checkedConfigFile; };

  upstreamType = types.submodule {
    options = {
      url = mkOption {
        type = types.str;
        example = "https://ghcr.io";
        description = "The registry's URL (http or https).";
      };
      credentialsFile = mkOption {
        # A string, not a path: a Nix path literal would be copied into the
        # world-readable store.
        type = types.nullOr (types.strMatching "/.+");
        default = null;
        example = "/run/secrets/ghcr.json";
        description = ''
          JSON `{"username": ..., "password": ...}` for this registry: an
          absolute path as a string, outside the Nix store (e.g. from sops-nix
          or agenix).  Passed to the service with LoadCredential; never copied
          into the store.
        '';
      };
      caFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "An extra CA bundle for this registry's TLS.";
      };
    };
  };

  recipeType = types.either types.str (types.submodule {
    options = {
      name = mkOption { type = types.str; description = "Recipe name or path."; };
      version = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Git tag of the recipe to enroll (`--version`).";
      };
    };
  });

  sizeType = types.nullOr (types.either types.ints.unsigned types.str);
in
{
  options.services.ccprewarm = {
    enable = mkEnableOption "ccprewarm, a registry pull-through cache and image pre-warmer";

    package = mkOption {
      type = types.package;
      default = pkgs.ccprewarm or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.ccprewarm or (pkgs.callPackage ./package.nix { })";
      description = "The ccprewarm package.";
    };

    listen = mkOption {
      type = types.str;
      default = pure.defaults.listen;
      example = "0.0.0.0:5000";
      description = "Address and port to listen on (`[::1]:5000`, `:5000` for all).";
    };

    dataDir = mkOption {
      type = types.path;
      default = pure.defaults.dataDir;
      description = "The store (blobs and the LMDB index).  The default is a StateDirectory.";
    };

    upstreams = mkOption {
      type = types.attrsOf upstreamType;
      default = pure.defaults.upstreams;
      defaultText = literalExpression ''
        {
          "docker.io".url = "https://registry-1.docker.io";
          "ghcr.io".url = "https://ghcr.io";
          "quay.io".url = "https://quay.io";
        }'';
      example = literalExpression ''
        {
          "docker.io".url = "https://registry-1.docker.io";
          "ghcr.io" = { url = "https://ghcr.io"; credentialsFile = "/run/secrets/ghcr.json"; };
        }'';
      description = "Registries served, by host name (with its port if it has one).  Setting this replaces the defaults.";
    };

    maxBytes = mkOption {
      type = sizeType;
      default = null;
      example = "200G";
      description = "Store size budget (`max_bytes`): bytes, or a number with K, M, G or T (powers of 1024).";
    };

    minFree = mkOption {
      type = sizeType;
      default = null;
      example = "10%";
      description = "Free-space floor on the store's filesystem: `\"10%\"` (`min_free_percent`) or a size (`min_free_bytes`).";
    };

    tagFreshness = mkOption {
      type = types.nullOr types.ints.unsigned;
      default = null;
      example = 600;
      description = "Seconds a cached tag is trusted before one HEAD upstream (`tag_freshness_seconds`; ccprewarm's default 300).";
    };

    platforms = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "linux/amd64" "linux/arm64" ];
      description = "Platforms pre-warm fetches from an index (empty: the machine's own).";
    };

    recipesDir = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = "Directory of recipes (`--recipes-dir`); needed when `recipes` names recipes rather than paths.";
    };

    recipes = mkOption {
      type = types.listOf recipeType;
      default = [ ];
      example = literalExpression ''[ "lasuite-docs" { name = "n8n"; version = "1.2.0+2.23.4"; } ]'';
      description = "Recipes enrolled when the service starts and kept enrolled by the warm timer.";
    };

    warm = {
      enable = mkEnableOption "a timer running `ccprewarm warm` (and re-enrolling `recipes`)";
      dates = mkOption {
        type = types.str;
        default = pure.defaults.warm.dates;
        example = "hourly";
        description = "systemd OnCalendar expression for the warm timer.";
      };
    };

    dockerWarm = mkOption {
      type = types.bool;
      default = false;
      description = "Enroll with `--docker`: also pull the recipes' images into the local dockerd.";
    };

    registerDockerMirror = mkOption {
      type = types.bool;
      default = true;
      description = "Add the mirror to dockerd's `registry-mirrors` (and `insecure-registries`, it is plain HTTP).";
    };

    containerdHosts = mkOption {
      type = types.bool;
      default = config.virtualisation.containerd.enable or false;
      defaultText = literalExpression "config.virtualisation.containerd.enable";
      description = "Write /etc/containerd/certs.d/<host>/hosts.toml for every upstream, pointing at the mirror.";
    };

    pinProtection = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Keep pinned images through docker's autoPrune: appends
        `--filter label!=ccprewarm.pin` to `virtualisation.docker.autoPrune.flags`
        and runs `ccprewarm docker-pins sync` before the prune (in NixOS's own
        docker-prune unit, which is extended, not redefined).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the listen port in the firewall.";
    };

    settings = mkOption {
      type = json.type;
      default = { };
      example = { max_requests = 8192; log_level = "debug"; };
      description = "Free-form JSON config merged over what the typed options produce (it wins).";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = cfg.recipes == [ ] || cfg.recipesDir != null
            || lib.all (x: lib.hasPrefix "/" (if builtins.isString x then x else x.name)) cfg.recipes;
          message = "services.ccprewarm.recipes names recipes but services.ccprewarm.recipesDir is not set";
        }
        {
          assertion = !cfg.dockerWarm || config.virtualisation.docker.enable;
          message = "services.ccprewarm.dockerWarm needs virtualisation.docker.enable";
        }
      ];

      users.users.ccprewarm = {
        isSystemUser = true;
        group = "ccprewarm";
        home = toString cfg.dataDir;
      };
      users.groups.ccprewarm = { };

      environment.systemPackages = [ cfg.package ];
      environment.variables.CCPREWARM_SERVER = r.serverUrl;

      systemd.tmpfiles.rules = lib.optional (r.hardening ? ReadWritePaths)
        "d ${toString cfg.dataDir} 0700 ccprewarm ccprewarm - -";

      systemd.services.ccprewarm = {
        description = "ccprewarm registry pull-through cache";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        serviceConfig = r.hardening // {
          ExecStart = r.execStart;
          LoadCredential = r.loadCredential;
        };
      };

      networking.firewall.allowedTCPPorts = r.firewallPorts;
    }

    (mkIf (cfg.recipes != [ ]) {
      # Enrolled at every start of the daemon (enrolling a warm recipe
      # fetches nothing) and again by the warm timer.
      systemd.services.ccprewarm-enroll = {
        description = "enroll ccprewarm recipes";
        wantedBy = [ "ccprewarm.service" ];
        partOf = [ "ccprewarm.service" ];
        after = [ "ccprewarm.service" ] ++ lib.optional cfg.dockerWarm "docker.service";
        path = [ pkgs.git ];
        script = r.enrollScript;
        serviceConfig = r.clientHardening // {
          Type = "oneshot";
          TimeoutStartSec = "2h";
        };
      };
    })

    (mkIf cfg.warm.enable {
      systemd.services.ccprewarm-warm = {
        description = "re-resolve and pre-warm every enrolled ccprewarm recipe";
        after = [ "ccprewarm.service" ];
        requires = [ "ccprewarm.service" ];
        path = [ pkgs.git ];
        script = r.warmScript;
        serviceConfig = r.clientHardening // {
          Type = "oneshot";
          TimeoutStartSec = "2h";
        };
        startAt = cfg.warm.dates;
      };
    })

    (mkIf (cfg.registerDockerMirror && config.virtualisation.docker.enable) {
      virtualisation.docker.daemon.settings = r.dockerDaemonSettings;
    })

    (mkIf cfg.containerdHosts {
      environment.etc = lib.mapAttrs'
        (host: text: lib.nameValuePair "containerd/certs.d/${host}/hosts.toml" { inherit text; })
        r.hostsToml;
    })

    (mkIf (cfg.containerdHosts && (config.virtualisation.containerd.enable or false)) {
      virtualisation.containerd.settings.plugins."io.containerd.grpc.v1.cri".registry.config_path =
        lib.mkDefault "/etc/containerd/certs.d";
    })

    (mkIf (cfg.pinProtection && config.virtualisation.docker.enable) {
      # Extends NixOS's docker-prune unit: its ExecStart (the script
      # `docker system prune -f <autoPrune.flags>`) stays NixOS's own.
      virtualisation.docker.autoPrune.flags = mkAfter r.autoPruneFlags;
      systemd.services.docker-prune = {
        wants = [ "ccprewarm.service" ];
        after = [ "ccprewarm.service" ];
        # A failed sync skips the prune: better no prune than pins lost.
        serviceConfig.ExecStartPre = [ r.pinsSyncCommand ];
      };
    })
  ]);
}
