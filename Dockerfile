# The application image: the `difflsrec` command (worker, bootstrap, replay, ...).
# Not built in this project's CI (no Docker engine there); docker-compose.yml uses it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DIFFLSREC_HOME=/var/lib/difflsrec

WORKDIR /app
COPY pyproject.toml README.md ./
COPY difflsrec ./difflsrec
COPY model ./model
COPY index ./index
COPY stream ./stream
COPY bootstrap ./bootstrap

# CPU wheels of torch keep the image small; on a GPU host install the CUDA build and faiss-gpu instead.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu "torch>=2.3" \
 && pip install .

VOLUME ["/var/lib/difflsrec"]
EXPOSE 6066
ENTRYPOINT ["difflsrec"]
CMD ["--help"]
