"""Pictures for the notebooks: they draw what they are given or read from /proc and do no
kernel work of their own. Import the submodule you need (matplotlib loads only then)."""
