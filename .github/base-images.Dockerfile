# The base images of the published images, pinned by digest. Never built: .github/workflows/images.yml
# reads the line of its matrix entry (by stage name) and passes its image as BASE_IMAGE (DISTROLESS_IMAGE
# for the distroless variant); Dependabot (.github/dependabot.yml) opens a pull request when a digest
# moves, and the tag names the Debian (or Alpine) release, so that a new release is a deliberate change
# here, not a surprise in a weekly rebuild (python:*-slim moved from bookworm to trixie in 2025).
# tests/unit/test_release.py checks that every matrix entry has a line, pinned by a sha256 digest.
FROM python:3.14-slim-trixie@sha256:51dafde81dbdb6ebde285137a295cf18a47ca95234fe388a343719cb97305b3d AS python3.14-slim
FROM python:3.13-slim-trixie@sha256:9d2e5553305c7c7b0097999bb17187c69b921ccd6bc9d40e4bb5ebe652c00285 AS python3.13-slim
FROM python:3.12-slim-trixie@sha256:d764629ce0ddd8c71fd371e9901efb324a95789d2315a47db7e4d27e78f1b0e9 AS python3.12-slim
FROM python:3.11-slim-trixie@sha256:9534e5a8e315485d4061ed659af0fd78a284c015f9b73661b41d6bab25604534 AS python3.11-slim
FROM python:3.14-alpine3.22@sha256:8373231e1e906ddfb457748bfc032c4c06ada8c759b7b62d9c73ec2a3c56e710 AS python3.14-alpine
FROM python:3.13-alpine3.22@sha256:af1fd7a973d8adc761ee6b9d362b99329b39eb096ea3c53b8838f99bd187011e AS python3.13-alpine
FROM python:3.12-alpine3.22@sha256:a190708a2dec1bd18b1decb539f8e8f5407abaa9bf39cacda583f7f8c11db322 AS python3.12-alpine
FROM python:3.11-alpine3.22@sha256:a4fc589b32e824f3f02ed9d7e7be19518aa47e105b80416336af9f202275a489 AS python3.11-alpine
# the distroless variant: its builder (Debian's python3-venv is added there) and its base, both trixie
FROM debian:trixie-slim@sha256:d7e12182ce18b85b93007c1dedf31f2d29e01ccf3182cc4017c709b6259bc132 AS distroless-builder
FROM gcr.io/distroless/python3-debian13:nonroot@sha256:4376456c1d8520c9d464f2c475465850efaecabf9a190ff24d4a0eef2b884bea AS distroless
