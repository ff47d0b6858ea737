import sys
from pyscript import document
import kvcache_calculator
document.documentElement.dataset.state = "ready"
print("ready", sys.version, kvcache_calculator.__version__)
