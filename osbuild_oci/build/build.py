"""A build: a pipeline file and the options it runs with, planned against a store, then its steps in order:
stages, assemble, publish (tag, push, sign, SBOM, lock), trim.

Everything that can be refused is refused before the store is touched or a
container starts (exit 2); the steps then share the store, the plan and the
monitor instead of threading them through long parameter lists.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import OsbuildOciError, UserError, in_file
from ..pipeline.model import Pipeline, load
from ..store import gc, packagecache, sources
from ..store.lock import open_store
from ..store.objects import ObjectStore
from ..store.refs import image_name, tree_ref
from . import lockfile, planner, publish
from .assemble import assemble
from .locate import Registries
from .monitor import JsonMonitor, Monitor, ProgressMonitor
from .options import Options, Policy, Remote
from .report import Facts, Recorder, facts_of_output, write_html, write_junit
from .runner import run_stages


def load_pipeline(path: Path) -> Pipeline:
    """The pipeline file, its input errors named after it, its notes (deprecated names) on stderr."""
    with in_file(path):
        model = load(path)
    for note in model.notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    return model


class Build:
    """One build of one pipeline file."""

    def __init__(self, options: Options, path: Path, pipeline: Pipeline | None = None,
                 monitor: Monitor | None = None):
        self.options, self.path = options, path
        self.pipeline = pipeline or load_pipeline(path)
        self.remote, self.policy = Remote.of(options), Policy.of(options)
        self.secrets = options.secret_files()
        self.monitor = monitor or (JsonMonitor() if options.json else ProgressMonitor())
        self.facts = Facts()
        if options.locked and options.lock is None:
            raise UserError("--locked builds with the images a lock file pins; name it with --lock FILE")
        self.pins = lockfile.load(options.lock) if options.locked else None
        self.registries = Registries(list(options.cache_from),
                                     lambda image, reason: self.monitor.cache_untrusted(image=image, reason=reason),
                                     lambda repo, error: self.monitor.cache_unavailable(registry=repo, error=error))

    def check(self) -> None:
        """What the options of a build cannot mean, said before anything runs."""
        options = self.options
        if self.remote.sign_key is not None and not (options.cache_to or options.pushes):
            raise UserError("--sign-key signs what --cache-to and --push push; give one of them")
        with in_file(self.path):
            planner.check_output(options.output, self.pipeline.assembler is not None)
        if (options.tags or options.pushes) and not self.pipeline.stages and self.pipeline.base is None:
            raise UserError("--tag/--push: the pipeline has no stages and no base, so there is no tree to name")

    def plan(self, store: ObjectStore) -> planner.Plan:
        """Resolve every image, check every option, compute every id; a refusal takes back what was pulled."""
        with in_file(self.path), store.unchanged_on_user_error():
            self.the_plan = planner.plan(self.pipeline, store, self.remote, self.policy, self.pins, self.secrets,
                                         self.options.context)
            self.new_lock = planner.lock_of(self.the_plan, store, self.options.lock, self.pipeline.base) \
                if self.options.lock and not self.options.locked else None
        return self.the_plan

    def stages(self, store: ObjectStore) -> str | None:
        """Run what the store and the cache registries lack; the final tree's id."""
        the_plan = self.the_plan
        if the_plan.base_image is not None:
            store.adopt(the_plan.base_image)
        cache = packagecache.prepare(self.options.package_cache) \
            if any(stage.image.package_cache for stage in the_plan.stages) else None
        with in_file(self.path):  # an input found wrong only when it is made ready (an image path) names its file
            run_stages(the_plan, store, self.monitor, self.remote, self.registries, self.options.keep_failed,
                       self.options.refresh, cache)
        return the_plan.final

    def assemble(self, store: ObjectStore) -> bool:
        """The assembler into -o (or its cached output); whether the output may be shared."""
        if self.the_plan.assembler is None or self.options.output is None:
            return False
        return assemble(self.the_plan, store, self.monitor, self.options.output, self.remote, self.registries,
                        self.options.refresh)

    def publish(self, store: ObjectStore, final: str | None, shareable: bool) -> None:
        """--tag, --push (signed, SBOM beside), --cache-to (every tree, then the output), --lock."""
        options = self.options
        for name in options.tags:
            store.tag(final, name)
        for destination in options.pushes:
            publish.publish_tree(store, final, image_name(destination), options.tls_verify, self.remote.sign_key)
        if options.cache_to:
            publish.cache_trees(self.the_plan, store, self.remote, self.monitor)
            if shareable:
                publish.cache_output(self.the_plan, store, self.remote, self.monitor)
        if self.new_lock is not None:
            self.new_lock.write()

    def trim(self, store: ObjectStore) -> None:
        """With a size limit, remove least recently used trees; never this build's own."""
        max_size = self.options.size_limit()
        if max_size is None:
            return
        the_plan = self.the_plan
        keep = {stage.id for stage in the_plan.stages} | {the_plan.base or "", the_plan.output_id or ""}
        cache = packagecache.PackageCache(self.options.package_cache or packagecache.default_dir())
        removed, size = gc.collect(store, max_size, keep=keep, others=[cache, sources.budgeted()])
        self.monitor.store_trimmed(removed=removed, size=size, max_size=max_size)

    def run_in(self, store: ObjectStore) -> str | None:
        """Every step but trimming, in a store this command holds; the final tree's id."""
        self.plan(store)
        self.monitor.pipeline_start(name=self.the_plan.name, stages=len(self.the_plan.stages))
        started = time.monotonic()
        final = self.stages(store)
        shareable = self.assemble(store)
        self.publish(store, final, shareable)
        store.finish()
        self.monitor.build_done(tree=final, image=tree_ref(final) if final else None,
                                seconds=round(time.monotonic() - started, 3))
        return final

    def run(self) -> str | None:
        """The whole build; the final tree's id."""
        self.check()
        with open_store(self.options.store, self.options.lock_timeout) as store:
            try:
                final = self.run_in(store)
            finally:
                self._facts(store)
            self.trim(store)
        return final

    def _facts(self, store: ObjectStore) -> None:
        """What a report needs from the store, read while it is open: each tree's own layer size."""
        if isinstance(self.monitor, Recorder) and getattr(self, "the_plan", None) is not None:
            ids = {stage.id for stage in self.the_plan.stages}
            self.facts.layers = {row["tree"]: row["size"] for row in gc.listing(store)
                                 if row["tree"] in ids and row["size"] is not None}


def run_build(options: Options, path: Path) -> str | None:
    """`osbuild-oci build`: the build, how it ended told to the monitor, and the reports asked for."""
    monitor: Monitor = JsonMonitor() if options.json else ProgressMonitor()
    recorder = Recorder(monitor) if options.report or options.junit else None
    build = None
    try:
        build = Build(options, path, monitor=recorder or monitor)
        return build.run()
    except OsbuildOciError as err:
        (recorder or monitor).build_failed(error=str(err).splitlines()[0], status=err.exit_code,
                                           kept=getattr(err, "kept_ref", None))
        raise
    finally:
        if recorder is not None:
            facts = build.facts if build is not None else Facts()
            done = recorder.of("assembler-done")
            if done and options.output is not None:
                facts.files, facts.sbom = facts_of_output(options.output, done[0]["files"])
            if options.report:
                write_html(recorder, facts, options.report)
            if options.junit:
                write_junit(recorder, options.junit)
