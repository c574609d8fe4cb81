"""ChimeraX-Cryovis: the cryovis engine's commands in UCSF ChimeraX.

``cryovis render|segment|pseudolabel|membranes|pick|open|save|threshold|config|jobs|cancel``.
One module per command family; this module only tells ChimeraX which function registers
which command.
"""

from chimerax.core.toolshed import BundleAPI

__version__ = "0.1.0"

# command name -> (module, CmdDesc attribute, function)
COMMANDS = {
    "cryovis render": ("render_cmd", "render_desc", "cryovis_render"),
    "cryovis segment": ("segment_cmd", "segment_desc", "cryovis_segment"),
    "cryovis pseudolabel": ("pseudolabel_cmd", "pseudolabel_desc", "cryovis_pseudolabel"),
    "cryovis membranes": ("membranes_cmd", "membranes_desc", "cryovis_membranes"),
    "cryovis pick": ("pick_cmd", "pick_desc", "cryovis_pick"),
    "cryovis open": ("particles_cmd", "open_desc", "cryovis_open"),
    "cryovis save": ("particles_cmd", "save_desc", "cryovis_save"),
    "cryovis threshold": ("threshold_cmd", "threshold_desc", "cryovis_threshold"),
    "cryovis config": ("config_cmd", "config_desc", "cryovis_config"),
    "cryovis jobs": ("config_cmd", "jobs_desc", "cryovis_jobs"),
    "cryovis cancel": ("config_cmd", "cancel_desc", "cryovis_cancel"),
}


class _CryovisAPI(BundleAPI):
    api_version = 1

    @staticmethod
    def register_command(bundle_info, command_info, logger):
        import importlib

        from chimerax.core.commands import register

        module_name, desc_name, func_name = COMMANDS[command_info.name]
        module = importlib.import_module(f"{__name__}.{module_name}")
        register(command_info.name, getattr(module, desc_name), getattr(module, func_name),
                 logger=logger)


bundle_api = _CryovisAPI()
