# nixos-module/package.nix: ccprewarm built with its own Makefile; the
# pkg-config inputs are the ones the Makefile's PKGS names.
{ lib
, stdenv
, pkg-config
, libevent
, curl
, lmdb
, jansson
, libyaml
, openssl
, version ? "0.1.0"
}:

stdenv.mkDerivation {
  pname = "ccprewarm";
  inherit version;

  # The repository without build output, test output or local state.
  src = lib.cleanSourceWith {
    src = lib.cleanSource ./..;
    filter = path: type:
      let rel = lib.removePrefix (toString ./.. + "/") (toString path);
      in !(lib.elem rel [ "build" "build-san" "var" "tests/out" "result" ]);
  };

  nativeBuildInputs = [ pkg-config ];
  buildInputs = [ libevent curl lmdb jansson libyaml openssl ];

  # No git in the sandbox: the version comes from here.  -Werror stays a
  # developer's flag; a newer compiler's new warning must not break a node.
  makeFlags = [ "PREFIX=${placeholder "out"}" "VERSION=${version}" "BUILD=build" ];
  preBuild = ''
    makeFlagsArray+=("WARN=-Wall -Wextra")
  '';
  buildFlags = [ "build/ccprewarm" ];

  # The unit and integration tests run in the repository (`make test`),
  # not in the sandbox (they need git, docker-registry, dockerd, ...).
  doCheck = false;

  meta = {
    description = "Registry pull-through cache and image pre-warmer for CI nodes";
    platforms = lib.platforms.linux;
    mainProgram = "ccprewarm";
  };
}
