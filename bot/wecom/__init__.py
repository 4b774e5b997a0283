"""WeCom (企业微信) platform layer: callback crypto, API client and callback parsing."""
