"""DataModules, one folder per family (mirroring models/); `registry` imports a family when it needs one."""
