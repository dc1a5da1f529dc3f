"""geni-am: a GENI AM API v3/v2 aggregate manager over pluggable substrate drivers."""
from setuptools import find_packages, setup

setup(
    name="geni-am",
    version="0.1.0",
    description="GENI-style aggregate manager (AM API v3 and v2) with pluggable substrate drivers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["am", "am.*", "rspec", "rspec.*", "drivers", "drivers.*",
                                    "credentials", "credentials.*"]),
    include_package_data=True,
    package_data={
        "drivers": ["xen/guest/*"],
        "rspec": ["schemas/*.xsd", "schemas/*/*.xsd", "schemas/*.md"],
        "credentials": ["schemas/*.xsd", "schemas/*.md"],
        "am": ["migrations/*.ini", "migrations/*.py", "migrations/*.mako", "migrations/versions/*.py",
               "web/templates/dashboard/*.html", "web/static/*"],
    },
    install_requires=[
        # python-xmlsec wheels bundle the libxml2 that lxml's wheels bundle; keep them in step.
        "lxml>=5.2,<7",
        "xmlsec>=1.3.14,<1.4",
        "cryptography>=42",
        "Flask>=3.0,<4",
        "SQLAlchemy>=2.0.30,<2.2",
        "alembic>=1.13,<2",
        "celery[redis]>=5.4,<6",
        "packaging>=23",
        "redis>=5,<9",
        "psycopg[binary]>=3.1,<4",
        "cheroot>=10,<12",
        "prometheus_client>=0.20",
        "tomli-w>=1.0",              # the default site writes its inventory (TOML)
        "matplotlib>=3.8",           # geni-am client calendar --png
        "graphviz>=0.20",            # dashboard topology layout (runs Graphviz's dot, apt graphviz)
        # Xen hosts through libvirt (builds against Debian's libvirt-dev; test:///default in tests)
        "libvirt-python>=9",
        # netlink in process (drivers/hostnet.py): namespaces, veth pairs, a namespace's view
        "pyroute2>=0.9,<0.10",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "geni-lib==0.9.9.4",
            "six>=1.16",
            "requests>=2.31",
            "os-ken>=4.2,<5",          # slice controllers in the OpenFlow data-plane tests
            "selenium>=4.20",          # drives Debian's chromium + chromedriver (no downloads)
            "atheris>=2.3",            # fuzzing harnesses under fuzz/
            "ruff>=0.6",               # lint (pyflakes rules) in .ci/run
            "import-linter>=2.0",      # the layer contracts in .ci/run
            "mypy>=1.10",              # types of the libraries, store, queue, site in .ci/run
        ],
    },
    entry_points={
        "console_scripts": ["geni-am=am.cli:main"],
        "geni_am.drivers": [
            "fake=drivers.fake:FakeDriver",
            "vserver=drivers.vserver:VServerDriver",
            "openflow=drivers.openflow:OpenFlowDriver",
            "xen=drivers.xen:XenDriver",
            "netfpga=drivers.netfpga:NetFPGADriver",
        ],
    },
)
