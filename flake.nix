# flake.nix: ccprewarm for NixOS.  packages.<system>.default (the daemon and
# CLI), overlays.default (pkgs.ccprewarm), nixosModules.default
# (services.ccprewarm, nixos-module/default.nix) and checks.<system>.nixos
# (nixos-module/test.nix, a VM test: needs KVM).  No flake.lock is
# committed: the operator's flake pins nixpkgs (inputs.ccprewarm.inputs.
# nixpkgs.follows = "nixpkgs").
{
  description = "ccprewarm: a registry pull-through cache and image pre-warmer for CI nodes";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: prev: {
        ccprewarm = final.callPackage ./nixos-module/package.nix { };
      };

      packages = forAllSystems (pkgs: rec {
        ccprewarm = pkgs.callPackage ./nixos-module/package.nix { };
        default = ccprewarm;
      });

      # The module's package defaults to pkgs.ccprewarm when the overlay is
      # applied, else to this flake's package.nix built with the node's pkgs.
      nixosModules.default = import ./nixos-module;
      nixosModules.ccprewarm = self.nixosModules.default;

      checks = forAllSystems (pkgs: {
        nixos = pkgs.testers.runNixOSTest ./nixos-module/test.nix;
      });
    };
}
