"""Operations and development assets; `infra.dev` is the importable `make run` supervisor."""
