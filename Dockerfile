# The image of the email-verification example: Vow installed the way the README says, with the
# example programs beside it in /app (they import as examples.email_verification.* from there).
# compose.yaml runs one container per program, each with its own command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN python -m pip install --no-cache-dir '.[examples,metrics]' \
    && useradd --create-home --uid 10001 vow

USER vow
CMD ["vow", "--help"]
