# nixos-module/lib.nix: everything the NixOS module decides, as plain data,
# with builtins only (no nixpkgs), so tests/integration/test_nixos_module.sh
# can evaluate it with Debian's nix-instantiate and run what it produces:
# option values -> the JSON config, ExecStart and helper scripts, the
# docker-prune flags, hosts.toml texts, dockerd settings and the systemd
# hardening.  default.nix only wraps this in mkOption/mkIf.
let
  inherit (builtins)
    attrNames concatStringsSep elemAt filter foldl' hasAttr head isAttrs
    isInt isString length listToAttrs map mapAttrs match replaceStrings
    substring stringLength toString;

  # Defaults of services.ccprewarm (default.nix declares the same ones).
  defaults = {
    listen = "127.0.0.1:5000";
    dataDir = "/var/lib/ccprewarm";
    upstreams = {
      "docker.io" = { url = "https://registry-1.docker.io"; };
      "ghcr.io" = { url = "https://ghcr.io"; };
      "quay.io" = { url = "https://quay.io"; };
    };
    maxBytes = null;
    minFree = null;
    tagFreshness = null;
    platforms = [ ];
    recipesDir = null;
    recipes = [ ];
    warm = { enable = false; dates = "daily"; };
    dockerWarm = false;
    dockerSocket = "/run/docker.sock";
    registerDockerMirror = true;
    containerdHosts = false;
    pinProtection = true;
    openFirewall = false;
    settings = { };
  };

  unitName = "ccprewarm.service";
  credentialsDir = "/run/credentials/${unitName}";
  defaultMaxRequests = 4096;

  # The label docker-pins sync puts on its placeholder containers; the
  # prune filter that keeps them (and so the images they use).
  pinLabel = "ccprewarm.pin";
  pruneFlags = [ "--filter" "label!=${pinLabel}" ];

  # merge A B: B wins; nested attrsets merge key by key (lists replace).
  merge = a: b:
    a // mapAttrs
      (k: v: if isAttrs v && isAttrs (a.${k} or null) then merge a.${k} v else v)
      b;

  # "20G", "512M", "1T", 1000 -> bytes (K/M/G/T are powers of 1024).
  units = { "" = 1; K = 1024; M = 1048576; G = 1073741824; T = 1099511627776; };
  parseSize = what: v:
    if v == null then null
    else if isInt v then v
    else
      let m = match "([0-9]+) *([KMGT]?)(i?B)?" v;
      in if m == null
      then throw "services.ccprewarm.${what}: '${v}' is not a size (bytes, or a number with K, M, G or T)"
      else (fromDec (head m)) * units.${elemAt m 1};

  fromDec = s:
    foldl' (n: c: n * 10 + digit c) 0
      (map (i: substring i 1 s) (range 0 (stringLength s - 1)));
  digit = c: (listToAttrs (map (i: { name = toString i; value = i; }) (range 0 9))).${c};
  range = a: b: if a > b then [ ] else [ a ] ++ range (a + 1) b;

  # minFree: bytes / "20G" -> min_free_bytes, "10%" -> min_free_percent.
  minFreeKeys = v:
    if v == null then { }
    else if isString v && match "[0-9]+%" v != null then
      let p = fromDec (substring 0 (stringLength v - 1) v);
      in if p > 99
      then throw "services.ccprewarm.minFree: '${v}' must be below 100%"
      else { min_free_percent = p; }
    else { min_free_bytes = parseSize "minFree" v; };

  # "host:port", "[v6]:port", ":port" -> { host; port; }.
  parseListen = l:
    let
      v6 = match "[[]([0-9a-fA-F:.]*)[]]:([0-9]+)" l;
      v4 = match "([^:]*):([0-9]+)" l;
      m = if v6 != null then v6 else v4;
    in
    if m == null
    then throw "services.ccprewarm.listen: '${l}' is not ADDR:PORT"
    else { host = head m; port = fromDec (elemAt m 1); v6 = v6 != null; };

  # How local clients (CLI, dockerd, containerd) reach a listen address.
  clientHostPort = l:
    let
      p = parseListen l;
      h =
        if p.v6 then (if p.host == "::" || p.host == "" then "[::1]" else "[${p.host}]")
        else if p.host == "" || p.host == "0.0.0.0" then "127.0.0.1"
        else p.host;
    in
    "${h}:${toString p.port}";

  # A LoadCredential id: no ':' (it separates id and path) or '/'.
  credentialId = host: "upstream-" + replaceStrings [ ":" "/" ] [ "_" "_" ] host;

  upstreamJson = host: u:
    { url = u.url; }
    // (if (u.credentialsFile or null) != null
        then { credentials_file = "${credentialsDir}/${credentialId host}"; }
        else { })
    // (if (u.caFile or null) != null then { ca_file = toString u.caFile; } else { });

  optionList = cond: l: if cond then l else [ ];
  quote = s: "'" + replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # build CFG { bin; configFile; }: everything the module needs, as JSON-able
  # data.  bin: the ccprewarm binary; configFile: where the JSON config will
  # be (a store path in the module).
  build = cfgIn: { bin, configFile }:
    let
      # Like the module system: a value given replaces the default (for
      # upstreams too), except warm's two fields.
      cfg = defaults // cfgIn // { warm = defaults.warm // (cfgIn.warm or { }); };

      typed =
        {
          listen = cfg.listen;
          data = cfg.dataDir;
          upstreams = mapAttrs upstreamJson cfg.upstreams;
        }
        // (if cfg.maxBytes != null then { max_bytes = parseSize "maxBytes" cfg.maxBytes; } else { })
        // minFreeKeys cfg.minFree
        // (if cfg.tagFreshness != null then { tag_freshness_seconds = cfg.tagFreshness; } else { })
        // (if cfg.platforms != [ ] then { platforms = cfg.platforms; } else { });

      # settings wins over the typed options.
      config = merge typed cfg.settings;

      # The same config for `serve --check` at build time: credentials are
      # only there at run time (LoadCredential), so every credentials_file
      # points at a stand-in the check writes next to it.
      checkConfig = config // (if config ? upstreams && isAttrs config.upstreams then {
        upstreams = mapAttrs
          (h: u: if isAttrs u && u ? credentials_file then u // { credentials_file = checkCredentialsFile; } else u)
          config.upstreams;
      } else { });
      checkCredentialsFile = "check-credentials.json";
      checkScript = ''
        printf '%s\n' '{"username": "check", "password": "check"}' >${checkCredentialsFile}
        chmod 600 ${checkCredentialsFile}
        ${bin} serve --check --config "$checkConfigFile"
      '';

      listen = parseListen config.listen;
      hostPort = clientHostPort config.listen;
      serverUrl = "http://${hostPort}";
      # (A wrong type is left for `serve --check` to report.)
      maxRequests =
        if isInt (config.max_requests or null) then config.max_requests else defaultMaxRequests;

      loadCredential = map (h: "${credentialId h}:${toString cfg.upstreams.${h}.credentialsFile}")
        (filter (h: (cfg.upstreams.${h}.credentialsFile or null) != null) (attrNames cfg.upstreams));

      execStart = "${bin} serve --config ${configFile}";

      recipeArgs = r:
        if isString r then { name = r; version = null; }
        else { name = r.name; version = r.version or null; };
      enrollCommand = r:
        let a = recipeArgs r; in
        concatStringsSep " " ([ bin "enroll" (quote a.name) ]
          ++ optionList (a.version != null) [ "--version" (quote a.version) ]
          ++ optionList (cfg.recipesDir != null) [ "--recipes-dir" (quote (toString cfg.recipesDir)) ]
          ++ optionList cfg.dockerWarm [ "--docker=${cfg.dockerSocket}" ]
          ++ [ "--server" serverUrl ]);
      enrollCommands = map enrollCommand cfg.recipes;

      # Waits for the daemon (it has no readiness notification), then
      # enrolls every recipe; one failing recipe does not stop the others.
      waitScript = ''
        i=0
        until ${bin} list --server ${serverUrl} >/dev/null 2>&1; do
          i=$((i + 1))
          if [ "$i" -ge 120 ]; then
            echo "ccprewarm: no answer from ${serverUrl} after 60 s" >&2
            exit 1
          fi
          sleep 0.5
        done
      '';
      enrollScript = waitScript + ''
        rc=0
      '' + concatStringsSep "" (map (c: ''
        ${c} || rc=1
      '') enrollCommands) + ''
        exit "$rc"
      '';
      warmCommand = "${bin} warm --server ${serverUrl}";
      # The timer keeps the recipes enrolled (someone may have unenrolled
      # one by hand), then re-resolves everything enrolled.
      warmScript = waitScript + ''
        rc=0
      '' + concatStringsSep "" (map (c: ''
        ${c} || rc=1
      '') enrollCommands) + ''
        ${warmCommand} || rc=1
        exit "$rc"
      '';

      pinsSyncCommand = "${bin} docker-pins sync --docker ${cfg.dockerSocket} --server ${serverUrl}";

      # Appended to virtualisation.docker.autoPrune.flags (a list option,
      # so they merge with the user's).
      autoPruneFlags = optionList cfg.pinProtection pruneFlags;

      dockerDaemonSettings =
        if cfg.registerDockerMirror then {
          registry-mirrors = [ serverUrl ];
          insecure-registries = [ hostPort ];
        } else { };

      # Every upstream the daemon knows, including ones only in settings.
      upstreamUrls =
        (if config ? upstream then { "docker.io" = config.upstream; } else { })
        // mapAttrs (h: u: if isString u then u else u.url) (config.upstreams or { });
      hostsToml = mapAttrs
        (h: url: ''
          # written by services.ccprewarm: pull ${h} through the mirror
          server = "${url}"

          [host."${serverUrl}"]
            capabilities = ["pull", "resolve"]
        '')
        upstreamUrls;

      privilegedPort = listen.port < 1024;
      defaultDataDir = config.data == defaults.dataDir;

      hardening = {
        User = "ccprewarm";
        Group = "ccprewarm";
        Restart = "on-failure";
        RestartSec = 5;
        UMask = "0077";
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        NoNewPrivileges = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        LockPersonality = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        # Empty: no capabilities at all, unless the port needs binding.
        CapabilityBoundingSet = if privilegedPort then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
        # Per live request: the client socket, an upstream socket, the blob
        # being read and the temp file being written; plus the store.
        LimitNOFILE = 4 * maxRequests + 1024;
      }
      // (if privilegedPort then { AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ]; } else { })
      // (if defaultDataDir
          then { StateDirectory = "ccprewarm"; StateDirectoryMode = "0700"; }
          else { ReadWritePaths = [ config.data ]; });

      # The CLI units (enroll, warm): same user, only a client of the
      # daemon (and of dockerd with dockerWarm).
      clientHardening = {
        User = "ccprewarm";
        Group = "ccprewarm";
        UMask = "0077";
        ProtectSystem = "strict";
        ProtectHome = "read-only";
        PrivateTmp = true;
        PrivateDevices = true;
        NoNewPrivileges = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        CapabilityBoundingSet = [ "" ];
        SystemCallFilter = [ "@system-service" ];
      } // (if cfg.dockerWarm then { SupplementaryGroups = [ "docker" ]; } else { });
    in
    {
      inherit config checkConfig checkScript checkCredentialsFile execStart
        enrollCommands enrollScript warmCommand warmScript pinsSyncCommand
        autoPruneFlags hostsToml dockerDaemonSettings hardening clientHardening
        loadCredential serverUrl hostPort;
      port = listen.port;
      firewallPorts = optionList cfg.openFirewall [ listen.port ];
    };

  # The line NixOS's docker-prune unit runs (nixos/modules/virtualisation/
  # docker.nix: `docker system prune -f ${toString cfg.autoPrune.flags}`).
  dockerPruneCommand = docker: flags: "${docker} system prune -f ${toString flags}";
in
{
  inherit defaults build merge parseSize parseListen clientHostPort credentialId
    pruneFlags pinLabel credentialsDir dockerPruneCommand;
}
